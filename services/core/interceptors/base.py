"""The base of our interceptors: one `around(call)` method instead of grpc-interceptor's
four-argument `intercept`, and a `Call` that knows how to proceed down the chain."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_interceptor.server import AsyncServerInterceptor


@dataclass(frozen=True)
class Call:
    """One call as an interceptor sees it: `method_name` is `/package.Service/Method`."""

    method_name: str
    request: Any
    context: grpc.aio.ServicerContext[Any, Any]
    next_handler: Callable[..., Any]

    async def proceed(self) -> Any:
        """Run the rest of the chain and the handler.

        A unary handler is awaited. A streaming one (reflection, health Watch: our own APIs
        are unary) hands back its async generator, which grpc then drives itself.
        """
        result = self.next_handler(self.request, self.context)
        return await result if inspect.isawaitable(result) else result

    def metadata(self) -> dict[str, str]:
        """The call's text metadata (binary `-bin` headers left out)."""
        pairs = self.context.invocation_metadata() or ()
        return {key: value for key, value in pairs if isinstance(value, str)}


class Interceptor(AsyncServerInterceptor, ABC):
    async def intercept(
        self,
        method: Callable[..., Any],
        request_or_iterator: Any,
        context: grpc.aio.ServicerContext[Any, Any],
        method_name: str,
    ) -> Any:
        return await self.around(Call(method_name, request_or_iterator, context, method))

    @abstractmethod
    async def around(self, call: Call) -> Any:
        """Do this interceptor's part and, unless it refuses the call, `await call.proceed()`."""
