"""`python -m gateway.frontdoor`: serve the front door until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gateway.frontdoor.console import console_server
from gateway.frontdoor.health import HealthChecker
from gateway.frontdoor.openai_door import OpenAIDoor
from gateway.frontdoor.pages import Pages, http_server
from gateway.frontdoor.reflection import add_reflection
from gateway.paths import OPENAPI_DOCUMENT
from gateway.render import DEFAULT_DESCRIPTOR
from gateway.settings import GatewaySettings
from services.core.logging import configure_logging
from services.core.metrics import serve_metrics_on

logger = logging.getLogger("r3mes.frontdoor")
GRPC_WORKERS = 4
STOP_GRACE_SECONDS = 1.0
STOP_DEADLINE_SECONDS = 5.0
# A thread per streamed answer, each woken for every chunk: with Python's 5 ms switch interval a
# woken thread waited up to 5 ms for the GIL behind the others.
GIL_SWITCH_SECONDS = 0.0005
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def grpc_server(settings: GatewaySettings, descriptor_set: Path) -> grpc.Server:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=GRPC_WORKERS, thread_name_prefix="reflection"),
        # Another process on the same port must be an error, never a silent neighbour.
        options=[("grpc.so_reuseport", 0)],
    )
    # Health for Envoy's check of this cluster: the front door serves once it has started.
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    add_reflection(server, descriptor_set)
    address = f"{settings.listen_host}:{settings.frontdoor_grpc_port}"
    if server.add_insecure_port(address) == 0:
        raise OSError(f"cannot listen on {address} (R3MES_FRONTDOOR_GRPC_PORT)")
    return server


def _exit_now() -> None:
    logger.error("stopping took longer than %s s: exiting now", STOP_DEADLINE_SECONDS)
    logging.shutdown()
    os._exit(1)


def main() -> None:
    settings = GatewaySettings()
    configure_logging(settings)
    # The stop signals are blocked in every thread and taken by sigwait below, never by a
    # handler: a handler that sets an Event takes a lock, and a second signal arriving while the
    # first one's handler holds it deadlocked the process (seen when a killed runner's children
    # got SIGTERM twice).
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    metrics = serve_metrics_on(
        settings.listen_host, settings.frontdoor_metrics_port, "R3MES_FRONTDOOR_METRICS_PORT"
    )
    checker = HealthChecker(settings)
    door = OpenAIDoor(settings)
    pages = Pages.load(OPENAPI_DOCUMENT, checker.check, door)
    web = http_server(settings.listen_host, settings.frontdoor_port, pages)
    reflection = grpc_server(settings, DEFAULT_DESCRIPTOR)
    reflection.start()
    threading.Thread(target=web.serve_forever, name="http", daemon=True).start()
    console = console_server(settings)
    if console is not None:
        threading.Thread(target=console.serve_forever, name="console", daemon=True).start()
    logger.info(
        "serving pages",
        extra={
            "http_port": settings.frontdoor_port,
            "grpc_port": settings.frontdoor_grpc_port,
            "console_port": settings.console_port,
        },
    )
    signal.sigwait(STOP_SIGNALS)
    # Stopping must end the process even if a step hangs (a runner killed with SIGKILL sends
    # every child SIGTERM at once, and a stuck page or channel must not keep this one alive).
    watchdog = threading.Timer(STOP_DEADLINE_SECONDS, _exit_now)
    watchdog.daemon = True
    watchdog.start()
    web.shutdown()
    if console is not None:
        console.shutdown()
    reflection.stop(STOP_GRACE_SECONDS).wait()
    checker.close()
    door.close()
    if metrics is not None:
        metrics.shutdown()
    logger.info("stopped")


if __name__ == "__main__":
    main()
