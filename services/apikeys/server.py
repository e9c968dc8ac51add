"""Wiring of the apikeys service: database, unit of work, use cases, servicer, server, and the
background jobs that write last uses and drop old challenges."""

from __future__ import annotations

from datetime import timedelta

from r3mes.apikeys.v1 import apikeys_pb2, apikeys_pb2_grpc

from services.apikeys.authentication import APIKeyAuthenticator
from services.apikeys.domain import Validation
from services.apikeys.key_cache import KeyInvalidations
from services.apikeys.repository import APIKeysRepositories
from services.apikeys.servicer import APIKeysServicer
from services.apikeys.settings import APIKeysSettings
from services.apikeys.spec import SPEC
from services.apikeys.usecases import APIKeysUseCases, KeyPolicy
from services.core.auth import InternalTokenAuthenticator
from services.core.background import PeriodicJob
from services.core.clock import Clock, utc_now
from services.core.hosting import HostContext, ServiceParts, host
from services.core.lifecycle import ServiceServer, open_database, run
from services.core.page_tokens import page_tokens_from_settings
from services.core.settings import Settings
from services.core.uow import UnitOfWork

CHALLENGE_SWEEP_SECONDS = 3600.0


class LocalKeyValidator:
    """Keys presented to the apikeys service itself are checked in-process, not by an RPC to
    itself."""

    def __init__(self, use_cases: APIKeysUseCases) -> None:
        self._use_cases = use_cases

    async def validate(self, secret: str) -> Validation:
        return await self._use_cases.validate(secret)


async def build(context: HostContext) -> ServiceParts:
    settings, clock = context.settings, context.clock
    database = await open_database(settings, "apikeys")
    uow = UnitOfWork(database, APIKeysRepositories.on, attempts=settings.db_retry_attempts)
    own = context.own(APIKeysSettings)
    invalidations = KeyInvalidations.from_settings(settings, own)
    policy = KeyPolicy(
        max_active_per_wallet=own.apikeys_max_active_per_wallet,
        challenge_ttl=timedelta(seconds=own.apikeys_challenge_ttl_seconds),
    )
    use_cases = APIKeysUseCases(uow, clock, policy, invalidations)
    servicer = APIKeysServicer(use_cases, page_tokens_from_settings(settings), clock)

    async def write_last_uses() -> None:
        await use_cases.flush_usage()

    return ServiceParts(
        servicer,
        apikeys_pb2_grpc.add_APIKeysServiceServicer_to_server,
        apikeys_pb2.DESCRIPTOR.services_by_name["APIKeysService"],
        # Closed in reverse: the last uses are written before the database goes.
        database=database,
        closers=[database.dispose, invalidations.close, write_last_uses],
        # Keys presented to this process are checked in-process, whichever service is called
        # (every service it hosts): no RPC, and a revocation here is seen at once.
        authenticators=[
            InternalTokenAuthenticator(settings.internal_token_value()),
            APIKeyAuthenticator(LocalKeyValidator(use_cases), invalidations, clock),
        ],
        jobs=[
            PeriodicJob("last-used", own.apikeys_last_used_flush_seconds, use_cases.flush_usage),
            PeriodicJob("challenge-sweep", CHALLENGE_SWEEP_SECONDS, use_cases.sweep_challenges),
        ],
    )


async def create_server(settings: Settings, clock: Clock = utc_now) -> tuple[ServiceServer, int]:
    """The apikeys service alone in a server."""
    return await host(settings, [SPEC], clock)


def main() -> None:
    run(create_server)
