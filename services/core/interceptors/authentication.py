"""Authentication: sets the call's principal from its metadata (see services.core.auth)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.core.auth import ANONYMOUS, Authenticator, current_principal
from services.core.interceptors.base import Call, Interceptor


class AuthenticationInterceptor(Interceptor):
    def __init__(self, authenticators: Sequence[Authenticator]) -> None:
        self._authenticators = tuple(authenticators)

    async def around(self, call: Call) -> Any:
        metadata = call.metadata()
        principal = ANONYMOUS
        for authenticator in self._authenticators:
            found = await authenticator.authenticate(metadata)
            if found is not None:
                principal = found
                break
        token = current_principal.set(principal)
        try:
            return await call.proceed()
        finally:
            current_principal.reset(token)
