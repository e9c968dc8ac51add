"""Wiring of the credits service: database, unit of work, use cases, servicer, background jobs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from r3mes.credits.v1 import credits_pb2, credits_pb2_grpc

from services.core.apikey_auth import authenticators_for
from services.core.auth import Authenticator
from services.core.background import PeriodicJob
from services.core.clients import ServiceClients
from services.core.clock import Clock, utc_now
from services.core.idempotency import sweeper_job
from services.core.lifecycle import ServiceServer, build_server, open_database, registration, run
from services.core.pagination import page_tokens_from_settings
from services.core.settings import Settings
from services.core.uow import UnitOfWork
from services.credits.repository import CreditsRepositories
from services.credits.servicer import CreditsServicer
from services.credits.usecases import CreditsUseCases

# Reads already treat an expired hold as released; the sweeper only makes the stored state say
# so, so a few seconds of lag cost nothing.
RESERVATION_SWEEP_SECONDS = 5.0
RESERVATION_SWEEPER = "reservation-sweeper"


async def create_server(
    settings: Settings,
    clock: Clock = utc_now,
    *,
    authenticators: Sequence[Authenticator] | None = None,
    sweep_interval_seconds: float = RESERVATION_SWEEP_SECONDS,
) -> tuple[ServiceServer, int]:
    database = await open_database(settings, "credits")
    # Only for the API-key checks (a wallet reading its own ledger): credits calls no peer.
    clients = ServiceClients(settings)
    if authenticators is None:
        authenticators = authenticators_for(settings, clients, clock)
    uow = UnitOfWork(database, CreditsRepositories.on, attempts=settings.db_retry_attempts)
    use_cases = CreditsUseCases(uow, clock)
    servicer = CreditsServicer(use_cases, page_tokens_from_settings(settings))
    service = credits_pb2.DESCRIPTOR.services_by_name["CreditsService"]
    add = credits_pb2_grpc.add_CreditsServiceServicer_to_server
    jobs = [
        PeriodicJob(RESERVATION_SWEEPER, sweep_interval_seconds, use_cases.expire_due),
        sweeper_job(
            uow,
            lambda repositories: repositories.idempotency,
            clock,
            timedelta(days=settings.idempotency_retention_days),
        ),
    ]
    return build_server(
        settings,
        "credits",
        [registration(add, servicer, service)],
        closers=[database.dispose, clients.close],
        authenticators=authenticators,
        jobs=jobs,
    )


def main() -> None:
    run(create_server)
