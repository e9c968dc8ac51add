"""Channels from one service to the others: the internal token, the request id and a deadline
on every call, and round-robin over every address a target resolves to (several replicas).

Hand-written because it is a few lines of grpc's own client-interceptor API; no library adds
exactly these headers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from services.core.auth import INTERNAL_TOKEN_HEADER
from services.core.logging import REQUEST_ID_HEADER, request_id_var
from services.core.settings import ServiceName, Settings

CHANNEL_OPTIONS = (("grpc.lb_policy_name", "round_robin"),)


class InternalCallInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, token: str | None, timeout_seconds: float) -> None:
        self._token = token
        self._timeout_seconds = timeout_seconds

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        metadata = grpc.aio.Metadata(*(client_call_details.metadata or ()))
        if self._token is not None:
            metadata.add(INTERNAL_TOKEN_HEADER, self._token)
        request_id = request_id_var.get()
        if request_id is not None:
            metadata.add(REQUEST_ID_HEADER, request_id)
        timeout = client_call_details.timeout
        details = grpc.aio.ClientCallDetails(
            method=client_call_details.method,
            timeout=self._timeout_seconds if timeout is None else timeout,
            metadata=metadata,
            credentials=client_call_details.credentials,
            wait_for_ready=client_call_details.wait_for_ready,
        )
        return await continuation(details, request)


class ServiceClients:
    """One channel per peer service, opened when first asked for, closed with the server."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._channels: dict[ServiceName, grpc.aio.Channel] = {}

    def channel(self, service: ServiceName) -> grpc.aio.Channel:
        if service not in self._channels:
            interceptor = InternalCallInterceptor(
                self._settings.internal_token_value(), self._settings.call_timeout_seconds
            )
            self._channels[service] = grpc.aio.insecure_channel(
                self._settings.target_of(service),
                options=CHANNEL_OPTIONS,
                interceptors=[interceptor],
            )
        return self._channels[service]

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
