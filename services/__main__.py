"""`python -m services [--services users,credits]`: one process hosting the chosen services
(default R3MES_SERVICES, all of them) on one gRPC port. `python -m services.<name>` is the same
with one service."""

from __future__ import annotations

import argparse

from services.core.clock import utc_now
from services.core.hosting import host
from services.core.lifecycle import ServiceServer, run
from services.core.registry import selected
from services.core.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services", description=__doc__)
    parser.add_argument("--services", help="all, or names separated by commas")
    chosen = parser.parse_args().services

    async def create_server(settings: Settings) -> tuple[ServiceServer, int]:
        try:
            specs = selected(chosen or settings.services)
        except ValueError as error:
            raise SystemExit(f"python -m services: {error}") from None
        return await host(settings, specs, utc_now)

    run(create_server)


main()
