"""Wiring of the users service: database, migrations, servicer, server."""

from __future__ import annotations

from r3mes.users.v1 import users_pb2, users_pb2_grpc

from services.core.clock import utc_now
from services.core.lifecycle import ServiceServer, build_server, open_database, registration, run
from services.core.settings import Settings
from services.users.servicer import UsersServicer


async def create_server(settings: Settings) -> tuple[ServiceServer, int]:
    database = await open_database(settings, "users")
    servicer = UsersServicer(database, clock=utc_now)
    service = users_pb2.DESCRIPTOR.services_by_name["UsersService"]
    add = users_pb2_grpc.add_UsersServiceServicer_to_server
    return build_server(
        settings, "users", [registration(add, servicer, service)], closers=[database.dispose]
    )


def main() -> None:
    run(create_server)
