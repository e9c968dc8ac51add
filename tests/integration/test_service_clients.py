"""Calls between services: on the service's own authority, whoever the caller of the current
request is, and never with the caller's own credential or address."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import grpc
import pytest
from pydantic import SecretStr

from services.core.auth import ANONYMOUS, Principal, current_principal
from services.core.clients import ServiceClients
from services.core.logging import request_id_var
from services.core.network import client_address_var
from services.core.settings import Settings

TOKEN = "clients-test-internal-token"
GATEWAY = "clients-test-gateway-secret"
METHOD = "/test.Probe/Headers"


@pytest.fixture
async def received() -> AsyncIterator[tuple[list[dict[str, str]], str]]:
    """A peer that records the metadata of every call it receives."""
    seen: list[dict[str, str]] = []

    async def headers(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        seen.append({k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)})
        return b""

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("test.Probe", {"Headers": _unary(headers)})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield seen, f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


def _unary(handler: Any) -> grpc.RpcMethodHandler[bytes, bytes]:
    return grpc.unary_unary_rpc_method_handler(handler)


async def _call_as(principal: Principal, target: str, client: str | None = None) -> None:
    settings = Settings(
        internal_token=SecretStr(TOKEN),
        gateway_secret=SecretStr(GATEWAY),
        targets={"credits": target},
    )
    clients = ServiceClients(settings)
    principal_token = current_principal.set(principal)
    client_token = client_address_var.set(client)
    request_token = request_id_var.set("req-123")
    try:
        channel = clients.channel("credits")
        probe = cast("grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]", channel.unary_unary(METHOD))
        await probe(b"")
    finally:
        current_principal.reset(principal_token)
        client_address_var.reset(client_token)
        request_id_var.reset(request_token)
        await clients.close()


async def test_a_call_on_the_services_own_authority_presents_the_internal_token(
    received: tuple[list[dict[str, str]], str],
) -> None:
    seen, target = received

    await _call_as(ANONYMOUS, target)

    assert seen[0]["x-r3mes-internal-token"] == TOKEN
    assert seen[0]["x-request-id"] == "req-123"


async def test_a_wallets_request_passes_on_neither_its_key_nor_its_address(
    received: tuple[list[dict[str, str]], str],
) -> None:
    seen, target = received
    wallet = Principal.wallet("remes1caller")

    await _call_as(wallet, target, client="203.0.113.7")

    assert seen[0]["x-r3mes-internal-token"] == TOKEN
    assert "x-api-key" not in seen[0]
    assert "x-forwarded-for" not in seen[0]
    assert "x-r3mes-gateway-secret" not in seen[0]
