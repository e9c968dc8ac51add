"""Wiring of the apikeys service: database, unit of work, use cases, servicer, server, and the
background jobs that write last uses and drop old challenges."""

from __future__ import annotations

from datetime import timedelta

from r3mes.apikeys.v1 import apikeys_pb2, apikeys_pb2_grpc

from services.apikeys.domain import Validation
from services.apikeys.repository import APIKeysRepositories
from services.apikeys.servicer import APIKeysServicer
from services.apikeys.usecases import APIKeysUseCases, KeyPolicy
from services.core.apikey_auth import APIKeyAuthenticator, KeyCheck, KeyStatus
from services.core.auth import InternalTokenAuthenticator
from services.core.background import PeriodicJob
from services.core.clock import Clock, utc_now
from services.core.key_cache import KeyInvalidations
from services.core.lifecycle import ServiceServer, build_server, open_database, registration, run
from services.core.pagination import page_tokens_from_settings
from services.core.settings import Settings
from services.core.uow import UnitOfWork

CHALLENGE_SWEEP_SECONDS = 3600.0


class LocalKeyValidator:
    """Keys presented to the apikeys service itself are checked in-process, not by an RPC to
    itself."""

    def __init__(self, use_cases: APIKeysUseCases) -> None:
        self._use_cases = use_cases

    async def validate(self, secret: str) -> KeyCheck:
        return key_check_of(await self._use_cases.validate(secret))


def key_check_of(validation: Validation) -> KeyCheck:
    return KeyCheck(
        KeyStatus[validation.status.name],
        validation.wallet_address,
        validation.key_id,
        validation.expire_time,
    )


async def create_server(settings: Settings, clock: Clock = utc_now) -> tuple[ServiceServer, int]:
    database = await open_database(settings, "apikeys")
    uow = UnitOfWork(database, APIKeysRepositories.on, attempts=settings.db_retry_attempts)
    invalidations = KeyInvalidations.from_settings(settings)
    policy = KeyPolicy(
        max_active_per_wallet=settings.apikeys_max_active_per_wallet,
        challenge_ttl=timedelta(seconds=settings.apikeys_challenge_ttl_seconds),
    )
    use_cases = APIKeysUseCases(uow, clock, policy, invalidations)
    servicer = APIKeysServicer(use_cases, page_tokens_from_settings(settings), clock)

    async def write_last_uses() -> None:
        await use_cases.flush_usage()

    service = apikeys_pb2.DESCRIPTOR.services_by_name["APIKeysService"]
    add = apikeys_pb2_grpc.add_APIKeysServiceServicer_to_server
    return build_server(
        settings,
        "apikeys",
        [registration(add, servicer, service)],
        # Closed in reverse: the last uses are written before the database goes.
        closers=[database.dispose, invalidations.close, write_last_uses],
        authenticators=[
            InternalTokenAuthenticator(settings.internal_token_value()),
            APIKeyAuthenticator(LocalKeyValidator(use_cases), invalidations, clock),
        ],
        jobs=[
            PeriodicJob(
                "last-used", settings.apikeys_last_used_flush_seconds, use_cases.flush_usage
            ),
            PeriodicJob("challenge-sweep", CHALLENGE_SWEEP_SECONDS, use_cases.sweep_challenges),
        ],
    )


def main() -> None:
    run(create_server)
