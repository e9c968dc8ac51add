"""A peer served by this very process, called through the shape of its generated async stub.

Whether two services share a process is a deployment decision (services.core.hosting), so the
caller's code is the same either way: it holds "a stub". When the peer is co-hosted, that stub
is this object: `stub.GetBalance(request)` awaits the peer servicer's own method with the request
message (no serialization, no interceptor chain: the caller's chain has already authenticated
and authorized its own caller), on the caller's own authority, as the remote channel would be
(services.core.clients.ServiceClients.channel). Whatever the peer raises reaches the caller as
the `grpc.aio.AioRpcError` the remote call would have raised: the same code, message and
google.rpc.Status details; the same deadline applies
(`call_timeout_seconds`; the options a stub takes per call are ignored).

Hand-written: grpc has no in-process transport for Python, and a loopback channel would pay the
serialization and the chain this exists to avoid.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc_status import rpc_status

from services.core.auth import INTERNAL, current_principal
from services.core.interceptors.errors import ErrorMapping
from services.core.metrics import peer_call_handled

Method = Callable[[Any, Any], Awaitable[Any]]


class ColocatedStub:
    """Looks like `<Service>Stub(channel)` to its caller; calls `servicer` directly."""

    def __init__(
        self, servicer: object, proto_service: str, error_domain: str, timeout_seconds: float
    ) -> None:
        self._servicer = servicer
        self._proto_service = proto_service
        self._errors = ErrorMapping(error_domain)
        self._timeout_seconds = timeout_seconds

    def __getattr__(self, method_name: str) -> Callable[..., Awaitable[Any]]:
        method: Method = getattr(self._servicer, method_name)
        full_name = f"/{self._proto_service}/{method_name}"

        async def call(request: Any, **_call_options: Any) -> Any:
            try:
                response = await self._call(method, request, full_name)
            except grpc.aio.AioRpcError as error:
                peer_call_handled(full_name, error.code().name)
                raise
            peer_call_handled(full_name, grpc.StatusCode.OK.name)
            return response

        return call

    async def _call(self, method: Method, request: Any, full_name: str) -> Any:
        # A task of its own: the peer's principal (below) stays out of the caller's context.
        task = asyncio.ensure_future(self._on_own_authority(method, request))
        try:
            return await asyncio.wait_for(task, self._timeout_seconds)
        except TimeoutError:
            raise _rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None
        except grpc.aio.AioRpcError:
            raise
        except Exception as error:
            status = rpc_status.to_status(self._errors.status_of(error, full_name))
            raise _rpc_error(status.code, status.details, status.trailing_metadata) from None

    @staticmethod
    async def _on_own_authority(method: Method, request: Any) -> Any:
        current_principal.set(INTERNAL)
        # Servicers read nothing of the call's context (the chain has done that), so none.
        return await method(request, None)


def _rpc_error(
    code: grpc.StatusCode,
    details: str,
    trailing: tuple[tuple[str, str | bytes], ...] = (),
) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), details=details
    )
