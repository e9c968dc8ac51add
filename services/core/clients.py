"""Channels from one service to the others: a request id, a deadline and credentials on every
call, and round-robin over every address a target resolves to (several replicas).

A call is made either on the calling service's **own authority** (`channel`: it presents the
internal token, for what the service needs for itself, such as the users service reading
network totals) or **on behalf of its caller** (`on_behalf_channel`: it presents the caller's
own credential, so a wallet's request never gains internal rights one hop later, and the next
service applies the caller's access rules and limits; the caller's address travels in
x-forwarded-for with the gateway secret, believed by services that trust this one as a proxy).

Hand-written because it is a few lines of grpc's own client-interceptor API; no library adds
exactly these headers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from services.core.auth import INTERNAL_TOKEN_HEADER, PrincipalKind, current_principal
from services.core.logging import REQUEST_ID_HEADER, request_id_var
from services.core.network import (
    FORWARDED_FOR_HEADER,
    GATEWAY_SECRET_HEADER,
    client_address_var,
)
from services.core.settings import ServiceName, Settings

API_KEY_HEADER = "x-api-key"
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
        timeout = client_call_details.timeout
        details = grpc.aio.ClientCallDetails(
            method=client_call_details.method,
            timeout=self._timeout_seconds if timeout is None else timeout,
            metadata=metadata,
            credentials=client_call_details.credentials,
            wait_for_ready=client_call_details.wait_for_ready,
        )
        return await continuation(details, request)


def own_authority(internal_token: str | None) -> Credentials:
    headers = [] if internal_token is None else [(INTERNAL_TOKEN_HEADER, internal_token)]
    return lambda: list(headers)


def on_behalf_of_caller(internal_token: str | None, gateway_secret: str | None) -> Credentials:
    """The current caller's credential: an internal caller stays internal, a wallet presents
    its own key, an anonymous caller presents nothing. Its address goes along when this
    service holds the gateway secret, without which the next one would not believe it."""

    def credentials() -> list[tuple[str, str]]:
        principal = current_principal.get()
        headers: list[tuple[str, str]] = []
        if principal.kind is PrincipalKind.INTERNAL and internal_token is not None:
            headers.append((INTERNAL_TOKEN_HEADER, internal_token))
        elif principal.kind is PrincipalKind.WALLET and principal.credential is not None:
            headers.append((API_KEY_HEADER, principal.credential))
        client = client_address_var.get()
        if client is not None and gateway_secret is not None:
            headers.append((FORWARDED_FOR_HEADER, client))
            headers.append((GATEWAY_SECRET_HEADER, gateway_secret))
        return headers

    return credentials


class ServiceClients:
    """Channels per peer service, opened when first asked for, closed with the server."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._channels: dict[tuple[ServiceName, bool], grpc.aio.Channel] = {}
        self._also_close: list[Callable[[], Awaitable[None]]] = []

    def closing(self, close: Callable[[], Awaitable[None]]) -> None:
        """Also run `close` when the channels close (what a client helper opened besides)."""
        self._also_close.append(close)

    def channel(self, service: ServiceName) -> grpc.aio.Channel:
        """Calls on this service's own authority (the internal token)."""
        return self._open(service, on_behalf=False)

    def on_behalf_channel(self, service: ServiceName) -> grpc.aio.Channel:
        """Calls on behalf of the caller of the current request (its own credential)."""
        return self._open(service, on_behalf=True)

    def _open(self, service: ServiceName, *, on_behalf: bool) -> grpc.aio.Channel:
        if (service, on_behalf) not in self._channels:
            token = self._settings.internal_token_value()
            if on_behalf:
                credentials = on_behalf_of_caller(token, self._settings.gateway_secret_value())
            else:
                credentials = own_authority(token)
            interceptor = OutgoingCallInterceptor(credentials, self._settings.call_timeout_seconds)
            self._channels[service, on_behalf] = grpc.aio.insecure_channel(
                self._settings.target_of(service),
                options=CHANNEL_OPTIONS,
                interceptors=[interceptor],
            )
        return self._channels[service, on_behalf]

    async def close(self) -> None:
        for close in reversed(self._also_close):
            await close()
        self._also_close.clear()
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
