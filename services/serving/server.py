"""Wiring of the serving service: database, unit of work, credits peer, node client, use cases,
servicer."""

from __future__ import annotations

from datetime import timedelta

from r3mes.credits.v1 import credits_pb2_grpc
from r3mes.serving.v1 import serving_pb2, serving_pb2_grpc

from services.core.background import PeriodicJob
from services.core.clock import Clock, utc_now
from services.core.hosting import HostContext, ServiceParts, host
from services.core.lifecycle import ServiceServer, open_database, run
from services.core.page_tokens import page_tokens_from_settings
from services.core.settings import Settings
from services.core.uow import UnitOfWork
from services.serving.domain import Price
from services.serving.nodes import Endpoints, NodeClient
from services.serving.peers import CreditsPeer
from services.serving.repository import ServingRepositories
from services.serving.servicer import ServingServicer
from services.serving.settings import ServingSettings
from services.serving.spec import SPEC
from services.serving.usecases import (
    SETTLEMENT_INTERVAL_SECONDS,
    SETTLEMENT_JOB,
    NodeHealth,
    ServingPolicy,
    ServingUseCases,
)


def policy_of(settings: ServingSettings) -> ServingPolicy:
    return ServingPolicy(
        prices={name: Price(p.prompt, p.completion) for name, p in settings.serving_prices.items()},
        default_price=Price(
            settings.serving_default_prompt_price_micro_credits,
            settings.serving_default_completion_price_micro_credits,
        ),
        node_share_percent=settings.serving_node_share_percent,
        offline_after=timedelta(seconds=settings.serving_node_offline_after_seconds),
        failure_cooldown_seconds=settings.serving_node_failure_cooldown_seconds,
    )


def endpoints_of(settings: ServingSettings) -> Endpoints:
    return Endpoints(settings.serving_endpoint_ports, settings.serving_private_networks)


async def build(context: HostContext) -> ServiceParts:
    settings, own = context.settings, context.own(ServingSettings)
    database = await open_database(settings, "serving")
    uow = UnitOfWork(database, ServingRepositories.on, attempts=settings.db_retry_attempts)
    endpoints = endpoints_of(own)
    nodes = NodeClient(endpoints, own.serving_node_timeout_seconds)
    policy = policy_of(own)
    use_cases = ServingUseCases(
        uow,
        context.clock,
        policy,
        # Reservations and captures on serving's own authority, in-process when co-hosted.
        CreditsPeer(context.peer("credits", credits_pb2_grpc.CreditsServiceStub)),
        nodes,
        endpoints,
        NodeHealth(policy.failure_cooldown_seconds),
    )
    return ServiceParts(
        ServingServicer(use_cases, page_tokens_from_settings(settings)),
        serving_pb2_grpc.add_ServingServiceServicer_to_server,
        serving_pb2.DESCRIPTOR.services_by_name["ServingService"],
        # Closed in reverse: settlements still running finish before the database goes.
        database=database,
        closers=[database.dispose, nodes.close, use_cases.drain],
        # Chats' settlements credits did not answer at the chat's end, asked again.
        jobs=[PeriodicJob(SETTLEMENT_JOB, SETTLEMENT_INTERVAL_SECONDS, use_cases.settle_deferred)],
    )


async def create_server(settings: Settings, clock: Clock = utc_now) -> tuple[ServiceServer, int]:
    """The serving service alone in a server (credits elsewhere)."""
    return await host(settings, [SPEC], clock)


def main() -> None:
    run(create_server)
