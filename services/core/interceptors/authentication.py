"""Authentication: sets the call's principal from its metadata (see services.core.auth)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grpc
from grpc_interceptor.server import AsyncServerInterceptor

from services.core.auth import ANONYMOUS, Authenticator, current_principal
from services.core.interceptors.handler import call_next


class AuthenticationInterceptor(AsyncServerInterceptor):
    def __init__(self, authenticators: Sequence[Authenticator]) -> None:
        self._authenticators = tuple(authenticators)

    async def intercept(
        self,
        method: Callable[..., Any],
        request_or_iterator: Any,
        context: grpc.aio.ServicerContext[Any, Any],
        method_name: str,
    ) -> Any:
        metadata = {
            key: value
            for key, value in (context.invocation_metadata() or ())
            if isinstance(value, str)
        }
        principal = ANONYMOUS
        for authenticator in self._authenticators:
            found = await authenticator.authenticate(metadata)
            if found is not None:
                principal = found
                break
        token = current_principal.set(principal)
        try:
            return await call_next(method, request_or_iterator, context)
        finally:
            current_principal.reset(token)
