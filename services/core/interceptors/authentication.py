"""Authentication: who the call's metadata proves the caller is (see services.core.auth).

A credential that is present but wrong is counted against its client's allowance of failed
authentications when rate limiting is on: past it the call is refused RESOURCE_EXHAUSTED
instead of UNAUTHENTICATED, and authenticators that look credentials up ask first, so a client
guessing keys costs no RPC and no database read once its allowance is spent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from services.core.auth import (
    ANONYMOUS,
    AuthenticationFailures,
    Authenticator,
    LooksUpCredentials,
    Principal,
)
from services.core.errors import Unauthenticated


class Authentication:
    """Asks each authenticator in turn; the first that recognises a credential decides."""

    def __init__(
        self,
        authenticators: Sequence[Authenticator],
        failures: AuthenticationFailures | None = None,
    ) -> None:
        self._authenticators = tuple(authenticators)
        self._failures = failures
        if failures is not None:
            for authenticator in self._authenticators:
                if isinstance(authenticator, LooksUpCredentials):
                    authenticator.limit_lookups(failures)

    async def principal(self, metadata: Mapping[str, str]) -> Principal:
        try:
            for authenticator in self._authenticators:
                found = await authenticator.authenticate(metadata)
                if found is not None:
                    return found
        except Unauthenticated:
            if self._failures is not None:
                await self._failures.failed()
            raise
        return ANONYMOUS
