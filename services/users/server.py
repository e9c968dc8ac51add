"""Wiring of the users service: database, unit of work, peers, use cases, servicer, server."""

from __future__ import annotations

from r3mes.credits.v1 import credits_pb2_grpc
from r3mes.mining.v1 import mining_pb2_grpc
from r3mes.users.v1 import users_pb2, users_pb2_grpc

from services.core.apikey_auth import authenticators_for
from services.core.clients import ServiceClients
from services.core.clock import Clock, utc_now
from services.core.lifecycle import ServiceServer, build_server, open_database, registration, run
from services.core.settings import Settings
from services.core.uow import UnitOfWork
from services.users.peers import Peers
from services.users.repository import UsersRepositories
from services.users.servicer import UsersServicer
from services.users.usecases import UsersUseCases


async def create_server(settings: Settings, clock: Clock = utc_now) -> tuple[ServiceServer, int]:
    database = await open_database(settings, "users")
    uow = UnitOfWork(database, UsersRepositories.on, attempts=settings.db_retry_attempts)
    clients = ServiceClients(settings)
    # Balances and mining activity are public reads: the users service asks on its own
    # authority, so an anonymous caller of GetUser still sees them.
    peers = Peers(
        credits=credits_pb2_grpc.CreditsServiceStub(clients.channel("credits")),
        mining=mining_pb2_grpc.MiningServiceStub(clients.channel("mining")),
    )
    servicer = UsersServicer(UsersUseCases(uow, peers, clock))
    service = users_pb2.DESCRIPTOR.services_by_name["UsersService"]
    add = users_pb2_grpc.add_UsersServiceServicer_to_server
    return build_server(
        settings,
        "users",
        [registration(add, servicer, service)],
        closers=[database.dispose, clients.close],
        authenticators=authenticators_for(settings, clients, clock),
    )


def main() -> None:
    run(create_server)
