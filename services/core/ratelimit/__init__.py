"""Rate limiting: GCRA buckets per wallet and per client address, per method policy.

`gcra` holds the algorithm and the in-process backend, `redis_backend` the distributed one,
`policies` the policy file. The request path's step is services.core.interceptors.ratelimit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from services.core.ratelimit.gcra import Decision, InProcessLimiter, Rate
from services.core.ratelimit.policies import Policies, Policy, PolicyFileError, load_policies
from services.core.ratelimit.redis_backend import (
    DecisionFailed,
    LimiterUnavailable,
    RedisLimiter,
    RedisProbe,
)
from services.core.settings import Settings

__all__ = [
    "Decision",
    "DecisionFailed",
    "InProcessLimiter",
    "Limiter",
    "LimiterUnavailable",
    "Policies",
    "Policy",
    "PolicyFileError",
    "Rate",
    "RedisLimiter",
    "RedisProbe",
    "limiter_from_settings",
    "load_policies",
]


class Limiter(Protocol):
    async def decide(
        self,
        policy: str,
        rate: Rate,
        subjects: Sequence[str],
        *,
        charge: bool = True,
        cost: int = 1,
        force: bool = False,
    ) -> Decision:
        """Admit the call and charge every bucket of `subjects` under `policy` `cost` units
        (unless `charge` is false: only say whether it would be admitted), or refuse it and
        charge none (unless `force`: then charged all the same, the buckets owing).
        Raises LimiterUnavailable while its backend is unreachable (the failure policy
        applies), DecisionFailed when this one call could not be decided."""

    async def close(self) -> None: ...


def limiter_from_settings(settings: Settings) -> Limiter | None:
    """The configured backend; None when rate limiting is off."""
    backend = settings.ratelimit_backend or ("redis" if settings.redis_url else "memory")
    if backend == "off":
        return None
    if backend == "memory":
        return InProcessLimiter()
    if settings.redis_url is None:
        raise ValueError("ratelimit_backend is redis but redis_url is not set")
    return RedisLimiter.from_url(
        settings.redis_url,
        settings.ratelimit_redis_decision_timeout_seconds,
        settings.ratelimit_redis_timeout_seconds,
        settings.ratelimit_redis_failure,
    )
