"""The lifecycle every service runs: build, start, serve until SIGTERM/SIGINT, drain, close.

Health (grpcio-health-checking) says NOT_SERVING until the server has started, SERVING while it
runs, and NOT_SERVING again the moment shutdown begins, so load balancers stop sending new calls
while in-flight ones get `grace_period_seconds` to finish. Pools are closed last.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from services.core.auth import Authenticator, default_authenticators
from services.core.background import PeriodicJob
from services.core.db import Database
from services.core.interceptors import interceptor_chain
from services.core.logging import configure_logging
from services.core.migrate import migrate_on_start
from services.core.network import trusted_networks
from services.core.settings import ServiceName, Settings

logger = logging.getLogger(__name__)

Closer = Callable[[], Awaitable[None]]
Registration = Callable[[grpc.aio.Server], None]


@dataclass
class ServiceServer:
    """A built gRPC server with its health service and what must be closed after it stops."""

    name: ServiceName
    grpc_server: grpc.aio.Server
    health: health_aio.HealthServicer
    service_names: Sequence[str]
    closers: Sequence[Closer]
    jobs: Sequence[PeriodicJob] = ()

    async def start(self) -> None:
        await self.grpc_server.start()
        for service in (*self.service_names, ""):
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        for job in self.jobs:
            await self._publish_job(job.name, True)
            job.start(self._publish_job)
        logger.info("serving", extra={"service": self.name})

    async def stop(self, grace_seconds: float) -> None:
        """Refuse new calls, let in-flight ones finish within the grace period, then close."""
        await self.health.enter_graceful_shutdown()
        await self.grpc_server.stop(grace_seconds)
        for job in self.jobs:
            await job.stop()
        for close in reversed(self.closers):
            await close()
        logger.info("stopped", extra={"service": self.name})

    async def _publish_job(self, job: str, healthy: bool) -> None:
        """A background job's state, in health as `<service>.<job>` (grpc health check)."""
        status = health_pb2.HealthCheckResponse
        await self.health.set(
            f"{self.name}.{job}", status.SERVING if healthy else status.NOT_SERVING
        )


def registration(
    add_to_server: Callable[[Any, grpc.aio.Server], None],
    servicer: object,
    service: ServiceDescriptor,
) -> tuple[Registration, str]:
    """Pair a generated `add_XServicer_to_server` with the service's full name (for health and
    reflection)."""
    return (lambda server: add_to_server(servicer, server)), service.full_name


async def open_database(settings: Settings, service: ServiceName) -> Database:
    """Connect (fail now rather than serve calls that cannot be answered) and, in embedded
    mode, migrate."""
    database = Database.from_settings(settings, service)
    try:
        await database.ping()
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
) -> tuple[ServiceServer, int]:
    """Assemble the server: interceptor chain, the service's servicers, health and reflection.

    `registrations` pairs each `add_XServicer_to_server` call with the service's full name.
    `authenticators` decide who is calling (default: the internal token only); `jobs` run in
    the background while the server serves, their state published in health.
    """
    if authenticators is None:
        authenticators = default_authenticators(settings)
    server = grpc.aio.server(
        interceptors=interceptor_chain(
            f"{name}.r3mes.network", authenticators, trusted_networks(settings.trusted_proxies)
        ),
        # Far above the gateway's 16 KiB header limit plus what it adds, so an oversized request
        # is always the gateway's 431, never a random 429 from gRPC's 8 KiB soft limit.
        options=[("grpc.max_metadata_size", 64 * 1024)],
    )
    for register, _ in registrations:
        register(server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    service_names = [full_name for _, full_name in registrations]
    reflection.enable_server_reflection(
        [
            *service_names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    port = server.add_insecure_port(f"{settings.listen_host}:{settings.port_of(name)}")
    return ServiceServer(name, server, health, service_names, closers, jobs), port


async def serve(server: ServiceServer, grace_seconds: float) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await server.start()
    await stopping.wait()
    logger.info("shutting down", extra={"service": server.name, "grace_seconds": grace_seconds})
    await server.stop(grace_seconds)


def run(create_server: Callable[[Settings], Awaitable[tuple[ServiceServer, int]]]) -> None:
    """The body of every service's main(): settings and logging first, then serve."""
    settings = Settings()
    configure_logging(settings)

    async def main() -> None:
        try:
            server, port = await create_server(settings)
        except Exception:
            logger.exception("failed to start")
            raise SystemExit(1) from None
        logger.info("listening", extra={"service": server.name, "port": port})
        await serve(server, settings.grace_period_seconds)

    asyncio.run(main())
