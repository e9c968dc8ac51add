"""Helpers for tests: a real server in-process on port 0, a channel to it, a fake clock."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import bech32
import grpc

from services.core.lifecycle import ServiceServer
from services.core.settings import ServiceName, Settings

CreateServer = Callable[[Settings], Awaitable[tuple[ServiceServer, int]]]


@asynccontextmanager
async def running_server(
    create_server: CreateServer, settings: Settings, name: ServiceName
) -> AsyncIterator[tuple[ServiceServer, grpc.aio.Channel]]:
    """Start the service on a free port of 127.0.0.1 and yield it with a channel to it."""
    async with (
        serving(create_server, settings, name) as (server, target),
        grpc.aio.insecure_channel(target) as channel,
    ):
        yield server, channel


@asynccontextmanager
async def serving(
    create_server: CreateServer, settings: Settings, name: ServiceName
) -> AsyncIterator[tuple[ServiceServer, str]]:
    """Start the service on a free port of 127.0.0.1 and yield it with its address, for tests
    in which other services call it."""
    settings = settings.model_copy(update={f"{name}_port": 0, "listen_host": "127.0.0.1"})
    server, port = await create_server(settings)
    await server.start()
    try:
        yield server, f"127.0.0.1:{port}"
    finally:
        await server.stop(grace_seconds=1.0)


class FakeClock:
    """A clock that stands still until a test moves it."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime(2026, 1, 15, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def new_wallet_address() -> str:
    """A fresh, valid `remes` address (a random 20-byte account)."""
    data = bech32.convertbits(os.urandom(20), 8, 5)
    assert data is not None
    address: str = bech32.bech32_encode("remes", data)
    return address
