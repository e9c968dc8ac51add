"""`python -m services.core.healthcheck`, the containers' health check in deploy/compose.yaml."""

from __future__ import annotations

import asyncio
import os
import sys
from asyncio.subprocess import PIPE

from runner.local_stack import LOOPBACK
from services.core.hosting import host
from services.core.ports import free_port
from services.core.registry import selected
from services.core.settings import Settings

HOSTED = "users,credits"


async def health_check(settings: Settings) -> tuple[int | None, str]:
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("R3MES_")},
        "R3MES_SERVICES": HOSTED,
        "R3MES_USERS_PORT": str(settings.port_of("users")),
        "R3MES_LISTEN_HOST": "0.0.0.0",  # noqa: S104 - what the containers set; checked on loopback
    }
    checker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.core.healthcheck", env=environment, stderr=PIPE
    )
    _, errors = await checker.communicate()
    return checker.returncode, errors.decode()


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
