"""Wiring of the users service: database, unit of work, peers, use cases, servicer."""

from __future__ import annotations

import redis.asyncio
from r3mes.credits.v1 import credits_pb2_grpc
from r3mes.mining.v1 import mining_pb2_grpc
from r3mes.users.v1 import users_pb2, users_pb2_grpc

from services.core.background import PeriodicJob
from services.core.clock import Clock, utc_now
from services.core.db import Database
from services.core.event_stream import (
    REDIS_TIMEOUT_SECONDS,
    StreamConsumer,
    redis_client,
    stream_name,
)
from services.core.features import Features
from services.core.hosting import HostContext, ServiceParts, host
from services.core.lifecycle import Closer, ServiceServer, open_database, run
from services.core.settings import Settings
from services.core.uow import UnitOfWork
from services.users.peers import Peers
from services.users.repository import UsersRepositories
from services.users.servicer import UsersServicer
from services.users.settings import UsersSettings
from services.users.spec import SPEC
from services.users.usecases import Freshness, ReadModel, UsersUseCases

READ_MODEL = "read-model"


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
    closers: list[Closer] = [database.dispose]
    jobs: list[PeriodicJob] = []
    fresh: Freshness | None = None
    if _reads_model(context, database):
        consumer, client = _consumer(settings, context.own(UsersSettings), uow)
        # No pause between reads: each waits (XREAD BLOCK) for the next events itself.
        jobs.append(PeriodicJob(READ_MODEL, 0.0, consumer.run_once))
        closers.append(client.aclose)
        staleness = context.own(UsersSettings).users_read_model_staleness_seconds

        def fresh() -> bool:
            return consumer.read_within(staleness)

    use_cases = UsersUseCases(
        uow, peers, context.clock, Features.from_settings(settings), read_model=fresh
    )
    return ServiceParts(
        UsersServicer(use_cases),
        users_pb2_grpc.add_UsersServiceServicer_to_server,
        users_pb2.DESCRIPTOR.services_by_name["UsersService"],
        database=database,
        closers=closers,
        jobs=jobs,
    )


def _reads_model(context: HostContext, database: Database) -> bool:
    """Whether GetUser reads the read model (UsersSettings.users_read_model)."""
    choice = context.own(UsersSettings).users_read_model
    if choice == "on" and context.settings.redis_url is None:
        raise ValueError("R3MES_USERS_READ_MODEL=on needs R3MES_REDIS_URL: events come by Redis")
    if choice == "auto":
        if context.settings.redis_url is None:
            return False
        remote = any(peer not in context.built for peer in SPEC.peers)
        # Co-hosted peers answer in a function call, but on PostgreSQL each call is still a
        # statement of its own: three per GetUser, where the model's is one (measured:
        # docs/performance.md). On SQLite those reads are cheaper than the model's upkeep.
        return remote or not database.is_sqlite
    return choice == "on"


def _consumer(
    settings: Settings, own: UsersSettings, uow: UnitOfWork[UsersRepositories]
) -> tuple[StreamConsumer, redis.asyncio.Redis]:
    assert settings.redis_url is not None
    block = own.users_read_model_staleness_seconds / 4
    client = redis_client(settings.redis_url, REDIS_TIMEOUT_SECONDS + block)
    balances = stream_name(settings.events_stream_prefix, "credits")
    mining = stream_name(settings.events_stream_prefix, "mining")
    model = ReadModel(uow, balances_stream=balances, mining_stream=mining)
    return StreamConsumer(client, [balances, mining], model, block_seconds=block), client


async def create_server(settings: Settings, clock: Clock = utc_now) -> tuple[ServiceServer, int]:
    """The users service alone in a server (its peers elsewhere)."""
    return await host(settings, [SPEC], clock)


def main() -> None:
    run(create_server)
