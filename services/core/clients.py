"""Channels from one service to the others: a request id, the trace context (a CLIENT span of
its own when tracing is on, services.core.tracing), a deadline and credentials on every call,
and round-robin over every address a target resolves to (several replicas).

A call is made on the calling service's **own authority**: it presents the internal token,
for what the service needs for itself (the users service reading balances and network totals
for its own answer). No service calls another on behalf of its caller, so no caller's
credential or address is ever passed on.

Hand-written because it is a few lines of grpc's own client-interceptor API; no library adds
exactly these headers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from services.core import tracing
from services.core.auth import INTERNAL_TOKEN_HEADER
from services.core.logging import REQUEST_ID_HEADER, request_id_var
from services.core.metrics import peer_call_handled
from services.core.settings import ServiceName, Settings

CHANNEL_OPTIONS = (("grpc.lb_policy_name", "round_robin"),)

Credentials = Callable[[], list[tuple[str, str]]]


class OutgoingCallInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, credentials: Credentials, timeout_seconds: float) -> None:
        self._credentials = credentials
        self._timeout_seconds = timeout_seconds

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        metadata = grpc.aio.Metadata(*(client_call_details.metadata or ()))
        for key, value in self._credentials():
            metadata.add(key, value)
        request_id = request_id_var.get()
        if request_id is not None:
            metadata.add(REQUEST_ID_HEADER, request_id)
        method = _method_name(client_call_details.method)
        span = tracing.start_client_span(method)
        trace_headers: dict[str, str] = {}
        tracing.inject(trace_headers, span)
        for key, value in trace_headers.items():
            metadata.add(key, value)
        timeout = client_call_details.timeout
        details = grpc.aio.ClientCallDetails(
            method=client_call_details.method,
            timeout=self._timeout_seconds if timeout is None else timeout,
            metadata=metadata,
            credentials=client_call_details.credentials,
            wait_for_ready=client_call_details.wait_for_ready,
        )
        try:
            call = await continuation(details, request)
            # Its status, once it has one (never raises; the caller still gets the answer or
            # the error when it awaits the call).
            code = await call.code()
        except BaseException as error:
            if span is not None:
                span.record_exception(error)
                tracing.end_rpc_span(span, "UNKNOWN", grpc.StatusCode.UNKNOWN.value[0], True)
            raise
        peer_call_handled(method, code.name)
        if span is not None:
            # Any status but OK is a failure of the call, for its caller (OpenTelemetry's gRPC
            # conventions); the peer's own span says whether the peer failed.
            tracing.end_rpc_span(span, code.name, code.value[0], code is not grpc.StatusCode.OK)
        return call


def _method_name(method: str | bytes) -> str:
    return method.decode() if isinstance(method, bytes) else method


def own_authority(internal_token: str | None) -> Credentials:
    headers = [] if internal_token is None else [(INTERNAL_TOKEN_HEADER, internal_token)]
    return lambda: list(headers)


class ServiceClients:
    """Channels per peer service, opened when first asked for, closed with the server."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._channels: dict[ServiceName, grpc.aio.Channel] = {}
        self._also_close: list[Callable[[], Awaitable[None]]] = []

    def closing(self, close: Callable[[], Awaitable[None]]) -> None:
        """Also run `close` when the channels close (what a client helper opened besides)."""
        self._also_close.append(close)

    def channel(self, service: ServiceName) -> grpc.aio.Channel:
        """Calls on this service's own authority (the internal token)."""
        if service not in self._channels:
            credentials = own_authority(self._settings.internal_token_value())
            interceptor = OutgoingCallInterceptor(credentials, self._settings.call_timeout_seconds)
            self._channels[service] = grpc.aio.insecure_channel(
                self._settings.target_of(service),
                options=CHANNEL_OPTIONS,
                interceptors=[interceptor],
            )
        return self._channels[service]

    async def close(self) -> None:
        for close in reversed(self._also_close):
            await close()
        self._also_close.clear()
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
