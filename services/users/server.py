"""Wiring of the users service: database, unit of work, peers, use cases, servicer."""

from __future__ import annotations

from r3mes.credits.v1 import credits_pb2_grpc
from r3mes.mining.v1 import mining_pb2_grpc
from r3mes.users.v1 import users_pb2, users_pb2_grpc

from services.core.clock import Clock, utc_now
from services.core.features import Features
from services.core.hosting import HostContext, ServiceParts, host
from services.core.lifecycle import ServiceServer, open_database, run
from services.core.settings import Settings
from services.core.uow import UnitOfWork
from services.users.peers import Peers
from services.users.repository import UsersRepositories
from services.users.servicer import UsersServicer
from services.users.spec import SPEC
from services.users.usecases import UsersUseCases


async def build(context: HostContext) -> ServiceParts:
    settings = context.settings
    database = await open_database(settings, "users")
    uow = UnitOfWork(database, UsersRepositories.on, attempts=settings.db_retry_attempts)
    # Balances and mining activity are public reads: the users service asks on its own
    # authority, so an anonymous caller of GetUser still sees them. In-process when co-hosted.
    peers = Peers(
        credits=context.peer("credits", credits_pb2_grpc.CreditsServiceStub),
        mining=context.peer("mining", mining_pb2_grpc.MiningServiceStub),
    )
    return ServiceParts(
        UsersServicer(UsersUseCases(uow, peers, context.clock, Features.from_settings(settings))),
        users_pb2_grpc.add_UsersServiceServicer_to_server,
        users_pb2.DESCRIPTOR.services_by_name["UsersService"],
        database=database,
        closers=[database.dispose],
    )


async def create_server(settings: Settings, clock: Clock = utc_now) -> tuple[ServiceServer, int]:
    """The users service alone in a server (its peers elsewhere)."""
    return await host(settings, [SPEC], clock)


def main() -> None:
    run(create_server)
