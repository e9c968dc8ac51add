"""Who is calling: the principal of every call, found from its metadata by authenticators.

The authentication interceptor asks each authenticator in turn; the first that recognises the
call's credentials decides. A credential that is present but wrong is UNAUTHENTICATED, never
silently anonymous, so a misconfigured caller finds out at once.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, runtime_checkable

from services.core.errors import Unauthenticated

INTERNAL_TOKEN_HEADER = "x-r3mes-internal-token"  # noqa: S105 (a header name, not a secret)
# Headers an outside caller may never set; the gateway strips them (docs/api.md).
INTERNAL_HEADER_PREFIX = "x-r3mes-"


class PrincipalKind(Enum):
    ANONYMOUS = "anonymous"
    INTERNAL = "internal"
    WALLET = "wallet"


@dataclass(frozen=True)
class Principal:
    """Who is calling. What proved it (an API key, the internal token) is not kept: no service
    calls another on its caller's behalf (services.core.clients), so nothing needs it again."""

    kind: PrincipalKind
    wallet_address: str | None = None

    @classmethod
    def wallet(cls, wallet_address: str) -> Principal:
        return cls(PrincipalKind.WALLET, wallet_address)


ANONYMOUS = Principal(PrincipalKind.ANONYMOUS)
INTERNAL = Principal(PrincipalKind.INTERNAL)

current_principal: ContextVar[Principal] = ContextVar("current_principal", default=ANONYMOUS)


class Authenticator(Protocol):
    async def authenticate(self, metadata: Mapping[str, str]) -> Principal | None:
        """The principal the metadata proves, None if it carries no credential of this kind.

        Raises Unauthenticated when a credential of this kind is present but not valid.
        """


class AuthenticationFailures(Protocol):
    """The failed authentications of the calling client, counted against an allowance
    (services.core.interceptors.ratelimit.FailedAuthentications)."""

    async def before_lookup(self) -> None:
        """Raises to refuse the call when its client has spent its allowance, before a
        credential is looked up (an RPC, a database read)."""

    async def failed(self) -> None:
        """Counts one failure; raises to refuse the call instead when the allowance is spent."""


@runtime_checkable
class LooksUpCredentials(Protocol):
    """An authenticator that spends I/O on a credential (a key is asked about): told the
    allowance, it asks `before_lookup` first."""

    def limit_lookups(self, failures: AuthenticationFailures) -> None: ...


class InternalTokenAuthenticator:
    """The internal service token, compared in constant time so timing reveals no prefix."""

    def __init__(self, token: str | None) -> None:
        self._token = token.encode() if token else None

    async def authenticate(self, metadata: Mapping[str, str]) -> Principal | None:
        offered = metadata.get(INTERNAL_TOKEN_HEADER)
        if offered is None:
            return None
        if self._token is None or not hmac.compare_digest(offered.encode(), self._token):
            raise Unauthenticated(
                "the internal service token is not valid", reason="BAD_INTERNAL_TOKEN"
            )
        return INTERNAL
