"""Rate limiting, the chain's step between validation and authorization.

After validation, so that a call refused for bad credentials or bad input costs no token; before
authorization, so that a caller probing methods it may not call is limited too. Each call is
charged to the bucket of its wallet principal (`wallet:<address>`) and to the bucket of its
client address (`ip:<address>`, from x-forwarded-for only when the peer is a trusted proxy):
clients behind one proxy are not one bucket, and a wallet cannot escape by changing address.
Calls of the internal service token are exempt unless the policy file gives them a policy.

Every limited call carries the IETF draft (httpapi-ratelimit-headers) fields `ratelimit-policy`
and `ratelimit`; a refusal is RESOURCE_EXHAUSTED (HTTP 429 through the gateway) with RetryInfo,
a QuotaFailure naming the bucket and `retry-after`. While Redis is unreachable the failure
policy applies: open admits calls unchecked; closed refuses them, also as RESOURCE_EXHAUSTED
(UNAVAILABLE would be a 503 through the gateway, and an outage of ours is no server error of
the call's).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from services.core.auth import Principal, PrincipalKind, current_principal
from services.core.background import PeriodicJob
from services.core.errors import ErrorDetails, QuotaViolation, ResourceExhausted
from services.core.metrics import RATELIMIT_AVAILABLE, RATELIMIT_FAILING_OPEN, ratelimit_decided
from services.core.network import client_address_var
from services.core.ratelimit import (
    Decision,
    DecisionFailed,
    Limiter,
    LimiterUnavailable,
    Policies,
    Policy,
    RedisLimiter,
    limiter_from_settings,
    load_policies,
)
from services.core.settings import Settings

POLICY_HEADER = "ratelimit-policy"
RATELIMIT_HEADER = "ratelimit"
RETRY_AFTER_HEADER = "retry-after"
OUR_PACKAGE_PREFIX = "/r3mes."

Headers = tuple[tuple[str, str], ...]
# The results of r3mes_ratelimit_decisions_total.
ALLOWED, LIMITED, UNCHECKED, UNDECIDED = "allowed", "limited", "unchecked", "undecided"


class RateLimiting:
    def __init__(
        self,
        limiter: Limiter,
        policies: Policies,
        failure: Literal["open", "closed"] = "open",
        unavailable_retry_seconds: float = 1.0,
    ) -> None:
        self._limiter = limiter
        self._policies = policies
        self._fail_open = failure == "open"
        self._unavailable_retry_seconds = unavailable_retry_seconds
        RATELIMIT_AVAILABLE.track(self, lambda step: float(step.available))
        RATELIMIT_FAILING_OPEN.track(
            self, lambda step: float(step._fail_open and not step.available)
        )

    @property
    def available(self) -> bool:
        """Whether the limiter can decide now (only a Redis limiter ever cannot)."""
        return bool(getattr(self._limiter, "available", True))

    async def check(self, method_name: str, principal: Principal) -> Headers:
        """Admit the call, returning the headers its response must carry, or raise
        RateLimited (its headers in it). `method_name` is grpc's `/package.Service/Method`.

        Nothing is sent now: headers sent before the handler has run commit the call, so a
        replica dying meanwhile would leave its caller a reset stream (INTERNAL through Envoy)
        that no retry policy retries, instead of UNAVAILABLE. The chain sends them with the
        answer or the refusal."""
        return await self._decide(method_name, principal)

    async def _decide(self, method_name: str, principal: Principal) -> Headers:
        if not method_name.startswith(OUR_PACKAGE_PREFIX):  # health checks, reflection
            return ()
        policy: Policy | None = self._policies.for_method(method_name)
        if principal.kind is PrincipalKind.INTERNAL:
            policy = self._policies.internal
        subjects = _subjects(principal)
        if policy is None or not subjects:
            return ()
        tokens = self._tokens_policy(method_name, principal)
        if tokens is not None:
            # First, and only asked: a wallet that owes tokens pays no call for its refusal.
            await self._check_tokens(tokens, principal)
        try:
            decision = await self._limiter.decide(policy.name, policy.rate, subjects)
        except LimiterUnavailable:
            # A state (logged, in health), not this call's luck: the failure policy applies.
            if self._fail_open:
                ratelimit_decided(policy.name, UNCHECKED)
                return ((POLICY_HEADER, policy.header),)
            ratelimit_decided(policy.name, UNDECIDED)
            raise self._undecided() from None
        except DecisionFailed:
            # Redis answers but this call got no decision: admitting it unchecked would let a
            # busy process exceed the limit, so it is refused whatever the failure policy.
            ratelimit_decided(policy.name, UNDECIDED)
            raise self._undecided() from None
        headers = ((POLICY_HEADER, policy.header), (RATELIMIT_HEADER, _ratelimit(policy, decision)))
        if decision.allowed:
            ratelimit_decided(policy.name, ALLOWED)
            return headers
        ratelimit_decided(policy.name, LIMITED)
        raise RateLimited(policy, decision, headers)

    def _tokens_policy(self, method_name: str, principal: Principal) -> Policy | None:
        """The tokens-per-minute policy of a wallet's call of this method, if it has one."""
        if principal.kind is not PrincipalKind.WALLET or not principal.wallet_address:
            return None
        if not method_name.startswith(OUR_PACKAGE_PREFIX):
            return None
        return self._policies.tokens.get(self._policies.for_method(method_name).name)

    async def _check_tokens(self, tokens: Policy, principal: Principal) -> None:
        subject = f"wallet:{principal.wallet_address}"
        try:
            decision = await self._limiter.decide(
                tokens.name, tokens.rate, [subject], charge=False, cost=0
            )
        except LimiterUnavailable:
            if self._fail_open:
                return
            raise self._undecided() from None
        except DecisionFailed:
            raise self._undecided() from None
        if not decision.allowed:
            headers = (
                (POLICY_HEADER, tokens.header),
                (RATELIMIT_HEADER, _ratelimit(tokens, decision)),
            )
            raise RateLimited(tokens, decision, headers, unit="tokens")

    async def charge_tokens(self, method_name: str, response: Any) -> None:
        """After an answer: its `usage.total_tokens` (the chat RPCs report them in their answer,
        or a stream's last message) charged to the wallet under the method's tokens policy,
        even past the limit (the bucket then owes, and refuses the wallet's next calls until it
        has refilled). Tokens of a stream the client left before its end are not counted."""
        if not self._policies.tokens:  # every answer of every RPC passes here
            return
        principal = current_principal.get()
        tokens = self._tokens_policy(method_name, principal)
        if tokens is None:
            return
        used = int(getattr(getattr(response, "usage", None), "total_tokens", 0) or 0)
        if used <= 0:
            return
        subject = f"wallet:{principal.wallet_address}"
        # The answer has left already: a limiter that cannot decide loses this charge only.
        with contextlib.suppress(LimiterUnavailable, DecisionFailed):
            await self._limiter.decide(tokens.name, tokens.rate, [subject], cost=used, force=True)

    def _undecided(self) -> ResourceExhausted:
        return ResourceExhausted(
            "rate limiting cannot decide right now; try again shortly",
            reason="RATE_LIMITER_UNAVAILABLE",
            details=ErrorDetails(retry_after_seconds=self._unavailable_retry_seconds),
        )


class FailedAuthentications:
    """Implements services.core.auth.AuthenticationFailures: each failed authentication is
    charged to the client address (`ip:<address>`) under its own policy, and once that bucket
    is empty the client's calls are refused RateLimited before any credential is looked up.

    While the limiter cannot decide, failures are not counted and credentials are checked as
    without a limiter: a wrong one is still UNAUTHENTICATED.
    """

    def __init__(self, limiter: Limiter, policy: Policy) -> None:
        self._limiter = limiter
        self._policy = policy

    async def before_lookup(self) -> None:
        await self._decide(charge=False)

    async def failed(self) -> None:
        await self._decide(charge=True)

    async def _decide(self, *, charge: bool) -> None:
        address = client_address_var.get()
        if not address:
            return
        policy = self._policy
        try:
            decision = await self._limiter.decide(
                policy.name, policy.rate, [f"ip:{address}"], charge=charge
            )
        except (LimiterUnavailable, DecisionFailed):
            return
        # A failure charged and allowed counts once; the check before a lookup, only when it
        # refuses (it charges nothing).
        if not decision.allowed or charge:
            ratelimit_decided(policy.name, ALLOWED if decision.allowed else LIMITED)
        if not decision.allowed:
            headers = (
                (POLICY_HEADER, policy.header),
                (RATELIMIT_HEADER, _ratelimit(policy, decision)),
            )
            raise RateLimited(policy, decision, headers)


class RateLimited(ResourceExhausted):
    """A refused call; `headers` go with the refusal."""

    reason = "RATE_LIMITED"

    def __init__(
        self, policy: Policy, decision: Decision, headers: Headers, unit: str = "calls"
    ) -> None:
        rate = policy.rate
        super().__init__(
            f"rate limit of {decision.subject} reached: {rate.limit} {unit} per "
            f"{rate.period_seconds:g} s under policy {policy.name}",
            details=ErrorDetails(
                metadata={"policy": policy.name},
                quota_violations=[
                    QuotaViolation(
                        decision.subject,
                        f"{rate.limit} {unit} per {rate.period_seconds:g} s ({policy.name})",
                    )
                ],
                retry_after_seconds=decision.retry_after_seconds,
            ),
        )
        retry_after = str(max(1, math.ceil(decision.retry_after_seconds)))
        self.headers = (*headers, (RETRY_AFTER_HEADER, retry_after))


def _subjects(principal: Principal) -> list[str]:
    subjects = []
    if principal.kind is PrincipalKind.WALLET and principal.wallet_address:
        subjects.append(f"wallet:{principal.wallet_address}")
    address = client_address_var.get()
    if address:
        subjects.append(f"ip:{address}")
    return subjects


def _ratelimit(policy: Policy, decision: Decision) -> str:
    return f'"{policy.name}";r={decision.remaining};t={math.ceil(decision.reset_seconds)}'


Closer = Callable[[], Awaitable[None]]


@dataclass
class RateLimitingSetup:
    """The step as settings configure it (None: off), the allowance of failed authentications
    (None: not limited), the Redis probe and the closer."""

    step: RateLimiting | None = None
    failures: FailedAuthentications | None = None
    jobs: list[PeriodicJob] = field(default_factory=list)
    closers: list[Closer] = field(default_factory=list)


def rate_limiting_from_settings(
    settings: Settings, service_names: Sequence[str] = ()
) -> RateLimitingSetup:
    """Load the policy file and check it against the hosted services' methods (raises
    PolicyFileError), then open the backend."""
    policies = load_policies(settings.ratelimit_policies_file)
    policies.check(service_names)
    limiter = limiter_from_settings(settings)
    if limiter is None:
        return RateLimitingSetup()
    step = RateLimiting(
        limiter,
        policies,
        settings.ratelimit_redis_failure,
        settings.ratelimit_redis_probe_seconds,
    )
    failures = None
    if policies.failed_authentication is not None:
        failures = FailedAuthentications(limiter, policies.failed_authentication)
    jobs: list[PeriodicJob] = []
    if isinstance(limiter, RedisLimiter):
        # Its failures show in health as `<service>.ratelimit` and are logged once per change.
        jobs.append(limiter.health_job(settings.ratelimit_redis_probe_seconds))
    return RateLimitingSetup(step, failures, jobs, [limiter.close])
