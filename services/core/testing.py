"""Helpers for tests: a real server in-process on port 0, a channel to it, a fake clock, a
Redis server and a PostgreSQL server of one's own."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from services.core.lifecycle import ServiceServer
from services.core.ports import free_port
from services.core.settings import ServiceName, Settings
from services.core.validators import new_wallet_address as new_wallet_address

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
    settings = settings.with_ports(**{name: 0}).model_copy(update={"listen_host": "127.0.0.1"})
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


class FakeMonotonic:
    """A monotonic clock (seconds, as `time.monotonic`) that stands still until a test moves
    its `now`."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@contextmanager
def own_redis_server(work_dir: Path) -> Iterator[RedisServer]:
    """A redis-server of the caller's own on a free loopback port, without persistence, stopped
    by its pid on exit: tests and benchmarks never touch the machine's shared Redis."""
    executable = shutil.which("redis-server")
    if executable is None:
        raise RuntimeError("redis-server is not installed: `make fault-tools` installs it")
    server = RedisServer.started(executable, free_port(), work_dir)
    try:
        yield server
    finally:
        server.stop()


@dataclass
class RedisServer:
    process: subprocess.Popen[bytes]
    port: int
    command: list[str]

    @classmethod
    def started(cls, executable: str, port: int, work_dir: Path) -> RedisServer:
        command = [
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
        ]
        server = cls(_redis_process(command), port, command)
        server.wait_until_it_answers()
        return server

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def pause(self) -> None:
        """SIGSTOP: Redis keeps its connections but answers nothing (a hung server)."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stopped for good (its connections closed), until `start`; a no-op when stopped."""
        if self.process.poll() is None:
            self.resume()
            self.process.terminate()
            self.process.wait(timeout=10)

    def start(self) -> None:
        """Started again on the same port (empty: it keeps nothing), once it answers."""
        self.process = _redis_process(self.command)
        self.wait_until_it_answers()

    def wait_until_it_answers(self) -> None:
        deadline = time.monotonic() + 10
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(16).startswith(b"+PONG")
        except OSError:
            return False


def _redis_process(command: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# PostgreSQL refuses to run as root; as root, the server runs as Debian's `postgres` user.
_POSTGRES_USER = "postgres"


@contextmanager
def own_postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the caller's own (Debian's binaries, found on PATH or under
    /usr/lib/postgresql) on a free loopback port, trust authentication, no fsync, in a folder of
    its own: stopped and removed on exit. For tests that stop and restart the database; the
    machine's shared server is never touched."""
    binaries = _postgres_binaries()
    user = _POSTGRES_USER if os.geteuid() == 0 else None
    # Its own folder under the system's temporary one: a test's folder may sit in one that only
    # root can enter.
    data_dir = Path(tempfile.mkdtemp(prefix="r3mes-postgres-"))
    if user is not None:
        shutil.chown(data_dir, user)
    server = PostgresServer(binaries, data_dir, free_port(), user)
    try:
        server.run(
            "initdb", "--auth=trust", "--username=postgres", "--pgdata", str(data_dir / "db")
        )
        server.start()
        yield server
    finally:
        if (data_dir / "db" / "postmaster.pid").exists():
            server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _postgres_binaries() -> Path:
    found = shutil.which("pg_ctl")
    if found is not None:
        return Path(found).parent
    installed = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not installed:
        raise RuntimeError("PostgreSQL is not installed: `make fault-tools` installs it")
    return Path(installed[-1]).parent


@dataclass
class PostgresServer:
    binaries: Path
    folder: Path
    port: int
    user: str | None

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, program: str, *arguments: str) -> None:
        # runuser rather than subprocess's `user=`: changing user in a child forked from a
        # process with threads (grpc's) crashed it now and then.
        as_user = [] if self.user is None else ["runuser", "-u", self.user, "--"]
        subprocess.run(
            [*as_user, str(self.binaries / program), *arguments],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start(self) -> None:
        """Start (again) on the same port and data, once it accepts connections."""
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=300"
        )
        log = str(self.folder / "postgres.log")
        self.run(
            "pg_ctl", "start", "--wait", "-D", str(self.folder / "db"), "-l", log, "-o", options
        )

    def stop(self) -> None:
        """A fast shutdown: every connection is closed at once, as in a restart or failover."""
        self.run("pg_ctl", "stop", "--wait", "--mode=fast", "-D", str(self.folder / "db"))


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


async def eventually(condition: Callable[[], bool], timeout_seconds: float = 10.0) -> None:
    """Wait until `condition()` holds; fails the test (AssertionError) past the timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    while not condition():
        assert loop.time() < deadline, "the condition did not come true in time"
        await asyncio.sleep(0.01)
