"""Helpers for tests: a real server in-process on port 0, a channel to it, a fake clock, a
Redis server of one's own."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bech32
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

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


def metric_value(name: str, **labels: str) -> float:
    """A sample of this process's metrics as Prometheus would read it (0 when absent)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


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


@contextmanager
def own_redis_server(work_dir: Path) -> Iterator[RedisServer]:
    """A redis-server of the caller's own on a free loopback port, without persistence, stopped
    by its pid on exit: tests and benchmarks never touch the machine's shared Redis."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    executable = shutil.which("redis-server")
    if executable is None:
        raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server)")
    process = subprocess.Popen(
        [
            executable,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(work_dir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = RedisServer(process, port)
    try:
        deadline = time.monotonic() + 10
        while not server.answers():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {port} did not start")
            time.sleep(0.02)
        yield server
    finally:
        server.resume()
        process.terminate()
        process.wait(timeout=10)


@dataclass
class RedisServer:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def pause(self) -> None:
        """SIGSTOP: Redis keeps its connections but answers nothing (a hung server)."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(16).startswith(b"+PONG")
        except OSError:
            return False


async def until_serving(
    target: str, timeout_seconds: float, running: Callable[[], bool] = lambda: True
) -> bool:
    """Whether the server at `target` reports SERVING in its health (service "") within the
    timeout; gives up early once `running()` says the process behind it has exited."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    async with grpc.aio.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while running() and loop.time() < deadline:
            try:
                reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.1)
    return False
