"""grpc server options chosen on purpose (services.core.lifecycle.server_options), as a caller
meets them: header sizes answered the same way every time, incomplete calls that end."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import grpc
import pytest

from services.core.lifecycle import ServiceServer, build_server
from services.core.settings import Settings
from services.core.testing import running_server

ECHO = "/test.Probe/Echo"
TRIES = 30

Unary = grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]


class Probe:
    def __init__(self) -> None:
        self.ran = 0

    def register(self, server: grpc.aio.Server) -> None:
        async def echo(request: bytes, context: Any) -> bytes:
            self.ran += 1
            return request

        handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(echo)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("test.Probe", {"Echo": handler}),)
        )


async def _serve(settings: Settings, probe: Probe) -> tuple[ServiceServer, int]:
    return build_server(settings, "users", [(probe.register, "test.Probe")])


@pytest.fixture
def probe() -> Probe:
    return Probe()


async def _codes(echo: Unary, header_bytes: int) -> Counter[grpc.StatusCode]:
    codes: Counter[grpc.StatusCode] = Counter()
    for _ in range(TRIES):
        try:
            await echo(b"", metadata=(("x-padding", "a" * header_bytes),), timeout=5)
            codes[grpc.StatusCode.OK] += 1
        except grpc.aio.AioRpcError as error:
            codes[error.code()] += 1
    return codes


async def test_headers_the_gateway_forwards_are_always_accepted_and_oversized_always_refused(
    tmp_path: Path, probe: Probe
) -> None:
    async def create(settings: Settings) -> tuple[ServiceServer, int]:
        return await _serve(settings, probe)

    async with running_server(create, Settings(data_dir=tmp_path), "users") as (_, channel):
        echo = cast("Unary", channel.unary_unary(ECHO))
        # Above grpc's default soft limit (8 KiB), where it refuses a random share, and above
        # the gateway's 16 KiB plus what it adds; then above the services' 64 KiB.
        accepted = await _codes(echo, 24 * 1024)
        refused = await _codes(echo, 80 * 1024)

    assert accepted == Counter({grpc.StatusCode.OK: TRIES})
    [(code, count)] = refused.items()
    assert (code, count) == (grpc.StatusCode.RESOURCE_EXHAUSTED, TRIES)


async def test_a_call_whose_message_never_arrives_ends_when_its_connection_ages_out(
    tmp_path: Path, probe: Probe
) -> None:
    async def create(settings: Settings) -> tuple[ServiceServer, int]:
        return await _serve(settings, probe)

    settings = Settings(
        data_dir=tmp_path, max_connection_age_seconds=1, max_connection_age_grace_seconds=1
    )
    never = asyncio.Event()

    async def no_message() -> AsyncIterator[bytes]:
        await never.wait()
        yield b""

    async with running_server(create, settings, "users") as (_, channel):
        # Headers go out at once; the one message the unary method waits for never does.
        incomplete = cast(
            "grpc.aio.StreamUnaryMultiCallable[bytes, bytes]", channel.stream_unary(ECHO)
        )
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await incomplete(no_message(), timeout=30)

    # Ended by the server (not by the caller's 30 s deadline), before any handler ran.
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    assert probe.ran == 0
