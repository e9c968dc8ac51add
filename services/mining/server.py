"""Wiring of the mining service: database, unit of work, use cases, servicer, background jobs
(idempotency sweeper, report pruner and, when a chain RPC URL is set, the block indexer)."""

from __future__ import annotations

from datetime import timedelta

from r3mes.mining.v1 import mining_pb2, mining_pb2_grpc

from services.core.background import PeriodicJob
from services.core.clock import Clock, utc_now
from services.core.event_stream import publishing_jobs
from services.core.hosting import HostContext, ServiceParts, host
from services.core.idempotency import sweeper_job
from services.core.lifecycle import Closer, ServiceServer, open_database, run
from services.core.page_tokens import page_tokens_from_settings
from services.core.settings import Settings
from services.core.uow import UnitOfWork
from services.mining.indexer import ChainIndexer
from services.mining.repository import MiningRepositories
from services.mining.servicer import MiningServicer
from services.mining.settings import MiningSettings
from services.mining.spec import SPEC
from services.mining.usecases import MiningUseCases


async def build(context: HostContext) -> ServiceParts:
    settings, clock = context.settings, context.clock
    own = context.own(MiningSettings)
    database = await open_database(settings, "mining")
    uow = UnitOfWork(database, MiningRepositories.on, attempts=settings.db_retry_attempts)
    use_cases = MiningUseCases(uow, clock)
    servicer = MiningServicer(use_cases, page_tokens_from_settings(settings))
    retention = timedelta(days=own.mining_report_retention_days)

    async def prune() -> int:
        return await use_cases.prune_reports(retention)

    # Miner events (written by a trigger, migration 0002) for users' read model.
    relaying, relay_closers = publishing_jobs(
        settings, "mining", uow, lambda repositories: repositories.outbox, clock
    )
    jobs = [
        *relaying,
        sweeper_job(
            uow,
            lambda repositories: repositories.idempotency,
            clock,
            timedelta(days=settings.idempotency_retention_days),
        ),
        PeriodicJob("report-pruner", own.mining_prune_interval_seconds, prune),
    ]
    closers: list[Closer] = [database.dispose, *relay_closers]
    if own.chain_rpc_url is not None:
        indexer = ChainIndexer.from_settings(own, use_cases)
        jobs.append(indexer.job())
        # Closed after the jobs have stopped (the lifecycle stops jobs before closers).
        closers.append(indexer.close)
    return ServiceParts(
        servicer,
        mining_pb2_grpc.add_MiningServiceServicer_to_server,
        mining_pb2.DESCRIPTOR.services_by_name["MiningService"],
        database=database,
        closers=closers,
        jobs=jobs,
    )


async def create_server(settings: Settings, clock: Clock = utc_now) -> tuple[ServiceServer, int]:
    """The mining service alone in a server."""
    return await host(settings, [SPEC], clock)


def main() -> None:
    run(create_server)
