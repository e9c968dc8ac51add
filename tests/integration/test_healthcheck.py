"""`python -m services.core.healthcheck` and `python -m gateway.frontdoor.healthcheck`, the
containers' health checks in deploy/compose.yaml."""

from __future__ import annotations

import asyncio
import os
import sys
from asyncio.subprocess import PIPE

from gateway.frontdoor.__main__ import grpc_server
from gateway.render import DEFAULT_DESCRIPTOR
from gateway.settings import GatewaySettings
from runner.local_stack import LOOPBACK
from services.core.hosting import host
from services.core.ports import free_port
from services.core.registry import selected
from services.core.settings import Settings

HOSTED = "users,credits"


async def run_check(module: str, **settings: str) -> tuple[int | None, str]:
    """`python -m module` with these R3MES_* settings alone, as in a container; its exit status
    and what it wrote on stderr."""
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("R3MES_")},
        "R3MES_LISTEN_HOST": "0.0.0.0",  # noqa: S104 - what the containers set; checked on loopback
        **settings,
    }
    checker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, env=environment, stderr=PIPE
    )
    _, errors = await checker.communicate()
    return checker.returncode, errors.decode()


async def health_check(settings: Settings) -> tuple[int | None, str]:
    return await run_check(
        "services.core.healthcheck",
        R3MES_SERVICES=HOSTED,
        R3MES_USERS_PORT=str(settings.port_of("users")),
    )


async def test_the_health_check_passes_while_the_hosted_services_serve_and_names_them_once_stopped(
    settings: Settings,
) -> None:
    settings = settings.with_ports(users=free_port()).model_copy(update={"listen_host": LOOPBACK})
    server, _ = await host(settings, selected(HOSTED))
    await server.start()
    try:
        serving = await health_check(settings)
    finally:
        await server.stop(grace_seconds=0.5)
    stopped = await health_check(settings)

    assert serving == (0, "")
    assert stopped == (
        1,
        "not serving: r3mes.users.v1.UsersService: UNAVAILABLE; "
        "r3mes.credits.v1.CreditsService: UNAVAILABLE\n",
    )


async def test_the_front_doors_health_check_passes_while_it_serves_and_says_so_once_stopped() -> (
    None
):
    port = free_port()
    front_door_settings = GatewaySettings(
        _env_file=None, listen_host=LOOPBACK, frontdoor_grpc_port=port
    )
    front_door = grpc_server(front_door_settings, DEFAULT_DESCRIPTOR)
    front_door.start()
    try:
        serving = await run_check(
            "gateway.frontdoor.healthcheck", R3MES_FRONTDOOR_GRPC_PORT=str(port)
        )
    finally:
        front_door.stop(0.5).wait()
    stopped = await run_check("gateway.frontdoor.healthcheck", R3MES_FRONTDOOR_GRPC_PORT=str(port))

    assert serving == (0, "")
    assert stopped == (1, "not serving: the front door: UNAVAILABLE\n")
