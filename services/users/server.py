"""Wiring of the users service: database, migrations, peers, servicer, server."""

from __future__ import annotations

from r3mes.credits.v1 import credits_pb2_grpc
from r3mes.mining.v1 import mining_pb2_grpc
from r3mes.users.v1 import users_pb2, users_pb2_grpc

from services.core.clients import ServiceClients
from services.core.clock import Clock, utc_now
from services.core.lifecycle import ServiceServer, build_server, open_database, registration, run
from services.core.settings import Settings
from services.users.peers import Peers
from services.users.servicer import UsersServicer


async def create_server(settings: Settings, clock: Clock = utc_now) -> tuple[ServiceServer, int]:
    database = await open_database(settings, "users")
    clients = ServiceClients(settings)
    peers = Peers(
        credits=credits_pb2_grpc.CreditsServiceStub(clients.channel("credits")),
        mining=mining_pb2_grpc.MiningServiceStub(clients.channel("mining")),
    )
    servicer = UsersServicer(database, peers, clock)
    service = users_pb2.DESCRIPTOR.services_by_name["UsersService"]
    add = users_pb2_grpc.add_UsersServiceServicer_to_server
    return build_server(
        settings,
        "users",
        [registration(add, servicer, service)],
        closers=[database.dispose, clients.close],
    )


def main() -> None:
    run(create_server)
