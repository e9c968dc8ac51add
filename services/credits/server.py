"""Wiring of the credits service: database, unit of work, use cases, servicer, background jobs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial

from r3mes.credits.v1 import credits_pb2, credits_pb2_grpc

from services.core.auth import Authenticator
from services.core.background import PeriodicJob
from services.core.clock import Clock, utc_now
from services.core.event_stream import publishing_jobs
from services.core.hosting import HostContext, ServiceParts, host
from services.core.idempotency import sweeper_job
from services.core.lifecycle import ServiceServer, open_database, run
from services.core.page_tokens import page_tokens_from_settings
from services.core.settings import Settings
from services.core.uow import UnitOfWork
from services.credits import metrics
from services.credits.repository import CreditsRepositories
from services.credits.servicer import CreditsServicer
from services.credits.spec import SPEC
from services.credits.usecases import CreditsUseCases

# Reads already treat an expired hold as released; the sweeper only makes the stored state say
# so, so a few seconds of lag cost nothing.
RESERVATION_SWEEP_SECONDS = 5.0
RESERVATION_SWEEPER = "reservation-sweeper"
# Counting the reservations of every state reads the state's whole index (reservations are never
# deleted: about 0.2 s per million rows on PostgreSQL), so a sweep does it once a minute at most;
# the HELD figures, read off the open holds alone, every sweep.
STATE_COUNT_INTERVAL = timedelta(minutes=1)


async def build(
    context: HostContext, *, sweep_interval_seconds: float = RESERVATION_SWEEP_SECONDS
) -> ServiceParts:
    settings, clock = context.settings, context.clock
    database = await open_database(settings, "credits")
    uow = UnitOfWork(database, CreditsRepositories.on, attempts=settings.db_retry_attempts)
    use_cases = CreditsUseCases(uow, clock)
    # Balance events (written by a trigger, migration 0003) for users' read model.
    relaying, relay_closers = publishing_jobs(
        settings, "credits", uow, lambda repositories: repositories.outbox, clock
    )
    jobs = [
        *relaying,
        PeriodicJob(
            RESERVATION_SWEEPER,
            sweep_interval_seconds,
            partial(sweep, use_cases, clock, StateCounting(STATE_COUNT_INTERVAL)),
        ),
        sweeper_job(
            uow,
            lambda repositories: repositories.idempotency,
            clock,
            timedelta(days=settings.idempotency_retention_days),
        ),
    ]
    return ServiceParts(
        CreditsServicer(use_cases, page_tokens_from_settings(settings)),
        credits_pb2_grpc.add_CreditsServiceServicer_to_server,
        credits_pb2.DESCRIPTOR.services_by_name["CreditsService"],
        database=database,
        closers=[database.dispose, *relay_closers],
        jobs=jobs,
    )


@dataclass
class StateCounting:
    """When the reservations of every state were last counted, to count them again once
    `interval` has passed."""

    interval: timedelta
    counted: datetime | None = None

    def due(self, now: datetime) -> bool:
        return self.counted is None or now - self.counted >= self.interval


async def sweep(use_cases: CreditsUseCases, clock: Clock, counting: StateCounting) -> int:
    """Expire the holds that are due, then publish what is still held (and, when due, how many
    are in each state); how many expired."""
    swept = await use_cases.expire_due()
    now = clock()
    metrics.publish(await use_cases.held(), now)
    if counting.due(now):
        metrics.publish_by_state(await use_cases.count_by_state())
        counting.counted = now
    return swept


async def create_server(
    settings: Settings,
    clock: Clock = utc_now,
    *,
    authenticators: Sequence[Authenticator] | None = None,
    sweep_interval_seconds: float = RESERVATION_SWEEP_SECONDS,
) -> tuple[ServiceServer, int]:
    """The credits service alone in a server; tests may choose its credential checks and how
    often expired holds are swept."""
    spec = replace(SPEC, build=partial(build, sweep_interval_seconds=sweep_interval_seconds))
    return await host(settings, [spec], clock, authenticators=authenticators)


def main() -> None:
    run(create_server)
