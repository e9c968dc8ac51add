"""The lifecycle every service runs: build, start, serve until SIGTERM/SIGINT, drain, close.

Health (grpcio-health-checking) says NOT_SERVING until the server has started, SERVING while it
runs, and NOT_SERVING again the moment shutdown begins. Then the server drains: new calls are
answered UNAVAILABLE (retryable) by the interceptor chain while the running ones get
`grace_period_seconds` to finish; only then is the grpc server stopped. Pools are closed last.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import grpc
import uvloop
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from services.core.auth import Authenticator, InternalTokenAuthenticator
from services.core.background import PeriodicJob
from services.core.db import Database
from services.core.errors import TransactionConflict
from services.core.interceptors import RequestChain
from services.core.interceptors.admission import Admission
from services.core.interceptors.errors import ErrorDomains
from services.core.interceptors.ratelimit import RateLimitingSetup, rate_limiting_from_settings
from services.core.logging import configure_logging
from services.core.metrics import CALLS_IN_FLIGHT, serve_metrics
from services.core.migrate import migrate_on_start
from services.core.network import trusted_networks
from services.core.settings import ServiceName, Settings
from services.core.tracing import configure_tracing
from services.core.workers import is_supervisor, supervise

# The gateway refuses requests whose headers pass 16 KiB (gateway/limits.py); a service takes
# 64 KiB, far above that plus what the gateway adds on the way (the original path, the request
# id, the forwarded address) and grpc's 32 bytes of accounting per header. So an oversized
# request is always the gateway's refusal. grpc's default is a soft limit of 8 KiB above which
# a random share of requests is refused, up to a hard limit: both are set, so that the same
# request is always answered the same way.
MAX_METADATA_BYTES = 64 * 1024
# A peer that vanished without closing its connection (and the calls on it) is noticed this fast.
KEEPALIVE_TIME_MS = 60_000
KEEPALIVE_TIMEOUT_MS = 20_000

logger = logging.getLogger(__name__)

Closer = Callable[[], Awaitable[None]]
Registration = Callable[[grpc.aio.Server], None]


@dataclass
class ServiceServer:
    """A built gRPC server with its health service and what must be closed after it stops."""

    name: str
    grpc_server: grpc.aio.Server
    health: health_aio.HealthServicer
    service_names: Sequence[str]
    closers: Sequence[Closer]
    jobs: Sequence[PeriodicJob] = ()
    admission: Admission = field(default_factory=Admission)

    async def start(self) -> None:
        await self.grpc_server.start()
        for service in (*self.service_names, ""):
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        for job in self.jobs:
            publish = partial(self._publish_job, job.service or self.name)
            await publish(job.name, True)
            job.start(publish, self.name)
        logger.info("serving calls", extra={"service": self.name})

    async def stop(self, grace_seconds: float) -> None:
        """Refuse new calls, let in-flight ones finish within the grace period, then close."""
        await self.health.enter_graceful_shutdown()
        remaining = await self.admission.drain(grace_seconds)
        if self.admission.running:
            logger.warning(
                "grace period over; cancelling the calls still running",
                extra={"service": self.name, "running": self.admission.running},
            )
        await self.grpc_server.stop(remaining)
        for job in self.jobs:
            await job.stop()
        for close in reversed(self.closers):
            await close()
        logger.info("stopped", extra={"service": self.name})

    async def _publish_job(self, service: str, job: str, healthy: bool) -> None:
        """A background job's state, in health as `<service>.<job>` (grpc health check)."""
        status = health_pb2.HealthCheckResponse
        await self.health.set(f"{service}.{job}", status.SERVING if healthy else status.NOT_SERVING)


def registration(
    add_to_server: Callable[[Any, grpc.aio.Server], None],
    servicer: object,
    service: ServiceDescriptor,
) -> tuple[Registration, str]:
    """Pair a generated `add_XServicer_to_server` with the service's full name (for health and
    reflection)."""
    return (lambda server: add_to_server(servicer, server)), service.full_name


async def _first_ping(database: Database, timeout_seconds: float) -> None:
    """A file another process is setting up (SQLite: its first connection switching the file
    to WAL, or migrating it) refuses connections for a moment; a starting service waits for it
    rather than exit, as it waits for a PostgreSQL connection."""
    deadline = asyncio.get_running_loop().time() + timeout_seconds
    while True:
        try:
            await database.ping()
            return
        except TransactionConflict:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)


async def open_database(settings: Settings, service: ServiceName) -> Database:
    """Connect (fail now rather than serve calls that cannot be answered) and, in embedded
    mode, migrate."""
    database = Database.from_settings(settings, service)
    try:
        await _first_ping(database, settings.db_connect_timeout_seconds)
        await migrate_on_start(database, service, settings)
    except BaseException:
        await database.dispose()
        raise
    return database


def build_server(
    settings: Settings,
    name: ServiceName,
    registrations: Sequence[tuple[Registration, str]],
    closers: Sequence[Closer] = (),
    *,
    authenticators: Sequence[Authenticator] | None = None,
    jobs: Sequence[PeriodicJob] = (),
    error_domains: Mapping[str, str] | None = None,
    label: str | None = None,
) -> tuple[ServiceServer, int]:
    """Assemble the server: interceptor chain, the service's servicers, health and reflection.

    `registrations` pairs each `add_XServicer_to_server` call with the service's full name.
    `authenticators` decide who is calling (default: the internal token alone; a hosted
    service gets what services.core.hosting derives from the registry, API keys included);
    `jobs` run in the background while the server serves, their state published in health. A
    server of several services (services.core.hosting) listens on the port of `name`, its
    first, gives `error_domains` per proto service and is called `label` in the logs.
    """
    if authenticators is None:
        authenticators = [InternalTokenAuthenticator(settings.internal_token_value())]
    admission = Admission(settings.drain_quiet_seconds)
    service_names = [full_name for _, full_name in registrations]
    limiting = rate_limiting_from_settings(settings, service_names)
    chain = request_chain(settings, name, authenticators, admission, limiting, error_domains)
    server = grpc.aio.server(interceptors=[chain], options=server_options(settings))
    for register, _ in registrations:
        register(server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        [
            *service_names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    port = listen(server, settings.listen_host, settings.port_of(name), port_setting(name))
    closers, jobs = [*limiting.closers, *closers], [*jobs, *limiting.jobs]
    built = ServiceServer(label or name, server, health, service_names, closers, jobs, admission)
    return built, port


def request_chain(
    settings: Settings,
    name: ServiceName,
    authenticators: Sequence[Authenticator],
    admission: Admission,
    limiting: RateLimitingSetup,
    error_domains: Mapping[str, str] | None = None,
) -> RequestChain:
    """The interceptor chain of a server named `name`, as the settings configure it (its
    series recorded only with a metrics port)."""
    chain = RequestChain(
        ErrorDomains(f"{name}.r3mes.network", error_domains or {}),
        authenticators,
        trusted_networks(settings.trusted_proxies),
        admission,
        limiting.step,
        settings.gateway_secret_value(),
        limiting.failures,
        metrics=settings.metrics_port is not None,
    )
    CALLS_IN_FLIGHT.track(admission, lambda a: a.running)
    return chain


def port_setting(service: str) -> str:
    """The environment variable that moves the service's port."""
    return f"R3MES_{service.upper()}_PORT"


class PortUnavailable(RuntimeError):
    """The service cannot listen where it was told to."""


def listen(server: grpc.aio.Server, host: str, port: int, setting: str) -> int:
    address = f"{host}:{port}"
    try:
        return server.add_insecure_port(address)
    except RuntimeError:
        # grpc's own message says only "Failed to bind", and advises debug logging.
        raise PortUnavailable(
            f"cannot listen on {address}: the port is in use by another process "
            f"(or the address is not this machine's): set {setting} to a free port "
            "(or R3MES_LISTEN_HOST to an address of this machine)"
        ) from None


def server_options(settings: Settings) -> list[tuple[str, int]]:
    """grpc core's options for every service's server; each is chosen on purpose."""
    return [
        ("grpc.max_metadata_size", MAX_METADATA_BYTES),
        ("grpc.absolute_max_metadata_size", MAX_METADATA_BYTES),
        # Sharing a port is for our own workers only: a second, unrelated process on a taken port
        # must fail to start rather than silently take half of the port's connections.
        ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
        # A call whose message never completes has no deadline of ours (the handler only runs
        # once the message is in): the connection's age bounds it, and every other call too.
        ("grpc.max_connection_age_ms", round(settings.max_connection_age_seconds * 1000)),
        (
            "grpc.max_connection_age_grace_ms",
            round(settings.max_connection_age_grace_seconds * 1000),
        ),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    ]


async def serve(server: ServiceServer, grace_seconds: float) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
        loop.add_signal_handler(signum, stopping.set)
    try:
        await server.start()
        await stopping.wait()
        logger.info("shutting down", extra={"service": server.name, "grace_seconds": grace_seconds})
        await server.stop(grace_seconds)
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def run(create_server: Callable[[Settings], Awaitable[tuple[ServiceServer, int]]]) -> None:
    """The body of every service's main(): settings and logging first, then serve (or, with
    R3MES_WORKERS above 1, start that many workers that each serve). Spans go to the collector,
    when one is set, under the server's name (`users`, or `apikeys+credits+...` in one)."""
    settings = Settings()
    configure_logging(settings)
    if is_supervisor(settings):
        raise SystemExit(supervise(settings.workers))

    async def main() -> None:
        try:
            serve_metrics(settings)
            server, port = await create_server(settings)
        except Exception:
            logger.exception("failed to start")
            raise SystemExit(1) from None
        configure_tracing(settings, server.name)
        logger.info("listening", extra={"service": server.name, "port": port, "pid": os.getpid()})
        await serve(server, settings.grace_period_seconds)

    if settings.uvloop:
        uvloop.run(main())
    else:
        asyncio.run(main())
