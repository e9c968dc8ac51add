"""Wallet principals from API keys, on every service: `x-api-key: r3mes_...` or
`authorization: Bearer r3mes_...`.

A key is checked by the apikeys service (ValidateAPIKey, on this service's own authority) and the
answer is kept for `apikeys_cache_ttl_seconds`, so a busy key costs one RPC per process per TTL.
That TTL is the bound on how long a revoked or deleted key keeps working anywhere; with Redis
configured the apikeys service also announces each withdrawn key on a pub/sub channel and every
process forgets it at once (the TTL still bounds a lost message). A key that fails its checksum
is refused here, with no RPC. A key that is present but not usable is UNAUTHENTICATED with a
reason that says why, never anonymous; when the apikeys service cannot answer, UNAVAILABLE.

It lives with the apikeys service (the issuer of the keys) and reaches other services through
the registry: `SPEC.authenticators_elsewhere` is what a process that does not host apikeys uses
(services.core.hosting); a process that hosts it checks keys in-process (services/apikeys/
server.py). Hence its grpc import: it is the apikeys service's client.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

import grpc
from r3mes.apikeys.v1 import apikeys_pb2, apikeys_pb2_grpc

from services.apikeys.domain import UNKNOWN_KEY, APIKeyState, Validation
from services.apikeys.key_cache import KeyCheckCache, KeyInvalidations
from services.apikeys.metrics import CACHE_HITS, CACHE_MISSES
from services.apikeys.settings import APIKeysSettings
from services.apikeys.validation_wire import validation_of_message
from services.core import validators
from services.core.auth import (
    AuthenticationFailures,
    Authenticator,
    InternalTokenAuthenticator,
    Principal,
)
from services.core.clients import ServiceClients
from services.core.clock import Clock, utc_now
from services.core.errors import Unauthenticated, Unavailable
from services.core.hosting import HostContext
from services.core.settings import Settings

logger = logging.getLogger(__name__)


API_KEY_HEADER = "x-api-key"
AUTHORIZATION_HEADER = "authorization"
BEARER = "bearer "


_REFUSALS = {
    None: ("the API key is not valid", "API_KEY_INVALID"),  # no such key
    APIKeyState.REVOKED: ("the API key was revoked", "API_KEY_REVOKED"),
    APIKeyState.EXPIRED: ("the API key has expired", "API_KEY_EXPIRED"),
}


class KeyValidator(Protocol):
    async def validate(self, secret: str) -> Validation:
        """The apikeys service's answer for a well-formed key; Unavailable if it cannot tell."""


def presented_api_key(metadata: Mapping[str, str]) -> str | None:
    """The key a call presents, if any: `x-api-key`, else a Bearer `authorization`."""
    offered = metadata.get(API_KEY_HEADER)
    if offered is not None:
        return offered.strip()
    authorization = metadata.get(AUTHORIZATION_HEADER)
    if authorization is not None and authorization[: len(BEARER)].lower() == BEARER:
        return authorization[len(BEARER) :].strip()
    return None


class APIKeyAuthenticator:
    """Implements services.core.auth.Authenticator for API keys, with the answers cached."""

    def __init__(
        self,
        validator: KeyValidator,
        invalidations: KeyInvalidations,
        clock: Clock = utc_now,
    ) -> None:
        self._validator = validator
        self._cache: KeyCheckCache[Validation] = invalidations.cache
        self._invalidations = invalidations
        self._clock = clock
        self._pending: dict[bytes, asyncio.Future[Validation]] = {}
        self._failures: AuthenticationFailures | None = None

    def limit_lookups(self, failures: AuthenticationFailures) -> None:
        """Implements services.core.auth.LooksUpCredentials."""
        self._failures = failures

    async def authenticate(self, metadata: Mapping[str, str]) -> Principal | None:
        secret = presented_api_key(metadata)
        if secret is None:
            return None
        check = await self.check(secret)
        if check.state is APIKeyState.ACTIVE and check.wallet_address is not None:
            return Principal.wallet(check.wallet_address)
        # (An ACTIVE answer without a wallet would be a broken one: refused like an unknown key.)
        message, reason = _REFUSALS.get(check.state, _REFUSALS[None])
        raise Unauthenticated(message, reason=reason)

    async def check(self, secret: str) -> Validation:
        digest = hashlib.sha256(secret.encode()).digest()
        cached = self._cache.get(digest)  # only well-formed keys are ever cached
        if cached is not None and not _past_expiry(cached, self._clock()):
            CACHE_HITS.inc()
            return cached
        try:
            validators.api_key(secret)
        except validators.InvalidValue:
            return UNKNOWN_KEY  # a typo or not a key of ours: no need to ask anyone
        CACHE_MISSES.inc()
        if self._failures is not None:  # a client past its allowance asks nothing more
            await self._failures.before_lookup()
        self._invalidations.ensure_listening()
        # One RPC per key however many calls miss the cache at once.
        pending = self._pending.get(digest)
        if pending is None:
            generation = self._cache.generation  # now, not when the task first runs
            pending = asyncio.ensure_future(self._validate(secret, digest, generation))
            self._pending[digest] = pending
            pending.add_done_callback(lambda _: self._pending.pop(digest, None))
        return await asyncio.shield(pending)

    async def _validate(self, secret: str, digest: bytes, generation: int) -> Validation:
        check = await self._validator.validate(secret)
        if check.state is not APIKeyState.ACTIVE:
            self._cache.put_refused(digest, check)
        else:
            # An answer that was in flight while a key was withdrawn may predate it: not kept.
            self._cache.put(digest, check, check.key_id, if_generation=generation)
        return check


def _past_expiry(check: Validation, now: datetime) -> bool:
    return check.expire_time is not None and check.expire_time <= now


class RemoteKeyValidator:
    """ValidateAPIKey on the calling service's own authority (its internal token)."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = apikeys_pb2_grpc.APIKeysServiceStub(channel)

    async def validate(self, secret: str) -> Validation:
        try:
            response = await self._stub.ValidateAPIKey(
                apikeys_pb2.ValidateAPIKeyRequest(secret=secret)
            )
        except grpc.aio.AioRpcError as error:
            logger.warning("the apikeys service did not answer", extra={"code": error.code().name})
            raise Unavailable(
                "API keys cannot be checked right now; retry", reason="API_KEYS_UNAVAILABLE"
            ) from None
        return validation_of_message(response)


def authenticators_for(
    settings: Settings, own: APIKeysSettings, clients: ServiceClients, clock: Clock = utc_now
) -> list[Authenticator]:
    """What a process that does not host apikeys accepts: the internal token and API keys,
    checked by the apikeys service over gRPC. The Redis listener closes with `clients`."""
    invalidations = KeyInvalidations.from_settings(settings, own)
    clients.closing(invalidations.close)
    authenticator = APIKeyAuthenticator(
        RemoteKeyValidator(clients.channel("apikeys")), invalidations, clock
    )
    return [InternalTokenAuthenticator(settings.internal_token_value()), authenticator]


def checks_elsewhere(context: HostContext) -> list[Authenticator]:
    """The apikeys spec's `authenticators_elsewhere`: a process without apikeys checks keys
    over gRPC, with apikeys' own settings."""
    own = context.own(APIKeysSettings)
    return authenticators_for(context.settings, own, context.clients, context.clock)
