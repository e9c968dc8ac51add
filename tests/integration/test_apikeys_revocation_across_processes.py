"""A revoked key stops working in another service's process within the documented bound: the
validation cache TTL without Redis, at once (well inside a long TTL) with Redis pub/sub, in
every service alike.

The suite runs as separate processes (gateway.local_stack, without Envoy): the key is revoked
through the apikeys process and refused by the others."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path

import grpc
import pytest
import redis.asyncio
from r3mes.apikeys.v1 import apikeys_pb2, apikeys_pb2_grpc
from r3mes.credits.v1 import credits_pb2, credits_pb2_grpc
from r3mes.mining.v1 import mining_pb2, mining_pb2_grpc
from r3mes.serving.v1 import serving_pb2, serving_pb2_grpc
from r3mes.users.v1 import users_pb2, users_pb2_grpc

from gateway.local_stack import LocalStack, running_stack
from services.core.registry import NAMES
from services.core.testing import new_wallet_address
from tests.integration.apikeys_support import as_key
from tests.integration.rpc import failure_of

TOKEN = "revocation-test-token"
INTERNAL = (("x-r3mes-internal-token", TOKEN),)
REDIS_URL = "redis://127.0.0.1:6379/9"
POLL_SECONDS = 0.05


@pytest.fixture(params=["ttl only", "redis"])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[LocalStack, float]]:
    """The stack, and the bound it promises: the TTL alone, or Redis well inside a long TTL."""
    if request.param == "redis":
        environment = {
            "R3MES_REDIS_URL": REDIS_URL,
            "R3MES_APIKEYS_INVALIDATION_CHANNEL": f"test.withdrawn.{uuid.uuid4().hex}",
            "R3MES_APIKEYS_CACHE_TTL_SECONDS": "60",
        }
        bound = 2.0
    else:
        environment = {"R3MES_APIKEYS_CACHE_TTL_SECONDS": "1"}
        bound = 1.0 + 1.0  # the TTL, plus room for a loaded machine
    # Split: the refusal is timed in a users process other than the apikeys one.
    with running_stack(
        tmp_path,
        internal_token=TOKEN,
        with_envoy=False,
        extra_environment=environment,
        topology="split",
    ) as running:
        yield running, bound


async def first_refusal_after(
    call: Callable[[], Awaitable[object]], give_up_seconds: float
) -> tuple[float, str]:
    """How long until `call` first fails, and its reason; "never refused" after the bound."""
    started = time.monotonic()
    while time.monotonic() - started < give_up_seconds:
        try:
            await call()
        except grpc.aio.AioRpcError as error:
            return time.monotonic() - started, failure_of(error).reason
        await asyncio.sleep(POLL_SECONDS)
    return give_up_seconds, "never refused"


async def test_a_revoked_key_is_refused_by_another_process_within_the_documented_time(
    stack: tuple[LocalStack, float],
) -> None:
    running, bound = stack
    wallet = new_wallet_address()
    async with (
        grpc.aio.insecure_channel(running.grpc_target("apikeys")) as apikeys_channel,
        grpc.aio.insecure_channel(running.grpc_target("users")) as users_channel,
    ):
        apikeys = apikeys_pb2_grpc.APIKeysServiceStub(apikeys_channel)
        users = users_pb2_grpc.UsersServiceStub(users_channel)
        created = await apikeys.CreateAPIKey(
            apikeys_pb2.CreateAPIKeyRequest(wallet_address=wallet, name="ci"), metadata=INTERNAL
        )
        # Accepted, and so cached, by the users process.
        await users.GetNetworkStats(
            users_pb2.GetNetworkStatsRequest(), metadata=as_key(created.secret)
        )
        await asyncio.sleep(0.5)  # let the users process settle (Redis: subscribed)
        await users.GetNetworkStats(
            users_pb2.GetNetworkStatsRequest(), metadata=as_key(created.secret)
        )

        await apikeys.RevokeAPIKey(
            apikeys_pb2.RevokeAPIKeyRequest(wallet_address=wallet, key_id=created.api_key.key_id),
            metadata=INTERNAL,
        )
        elapsed, reason = await first_refusal_after(
            partial(
                users.GetNetworkStats,
                users_pb2.GetNetworkStatsRequest(),
                metadata=as_key(created.secret),
            ),
            bound + 5.0,
        )

    assert reason == "API_KEY_REVOKED"
    assert elapsed <= bound, f"refused after {elapsed:.2f} s; the bound is {bound} s"


# Far below REDIS_TTL_SECONDS: a refusal within it can only come from the announcement.
GIVE_UP_SECONDS = 10.0
REDIS_TTL_SECONDS = "60"


@pytest.fixture(scope="module")
async def redis_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStack]:
    """One stack for every service's case, listening on a channel of its own; no rate limits
    (the polls would otherwise meet them)."""
    channel = f"test.withdrawn.{uuid.uuid4().hex}"
    environment = {
        "R3MES_REDIS_URL": REDIS_URL,
        "R3MES_APIKEYS_INVALIDATION_CHANNEL": channel,
        "R3MES_APIKEYS_CACHE_TTL_SECONDS": REDIS_TTL_SECONDS,
        "R3MES_RATELIMIT_BACKEND": "off",
    }
    with running_stack(
        tmp_path_factory.mktemp("revocation"),
        internal_token=TOKEN,
        with_envoy=False,
        extra_environment=environment,
        # A process apart from apikeys learns of a revocation only through Redis.
        topology="split",
    ) as running:
        await every_process_listening(running, channel)
        yield running


async def every_process_listening(running: LocalStack, redis_channel: str) -> None:
    """A process subscribes when it checks its first key: show each a key, then give them all
    the time to subscribe (a bound, not a check: one that never listens fails its case)."""
    wallet = new_wallet_address()
    async with grpc.aio.insecure_channel(running.grpc_target("apikeys")) as apikeys_channel:
        created = await apikeys_pb2_grpc.APIKeysServiceStub(apikeys_channel).CreateAPIKey(
            apikeys_pb2.CreateAPIKeyRequest(wallet_address=wallet, name="warm"), metadata=INTERNAL
        )
    for service in NAMES:
        async with grpc.aio.insecure_channel(running.grpc_target(service)) as channel:
            await keyed_call(service, channel, wallet, created.secret)()
    client = redis.asyncio.from_url(REDIS_URL)
    try:
        for _ in range(100):
            [(_, count)] = await client.pubsub_numsub(redis_channel)
            if count >= len(NAMES):
                return
            await asyncio.sleep(POLL_SECONDS)
    finally:
        await client.aclose()


def keyed_call(
    service: str, channel: grpc.aio.Channel, wallet: str, secret: str
) -> Callable[[], Awaitable[object]]:
    """A read of `service` that any key may make (its own wallet's, where that matters)."""
    key = as_key(secret)
    match service:
        case "users":
            users = users_pb2_grpc.UsersServiceStub(channel)
            return partial(users.GetNetworkStats, users_pb2.GetNetworkStatsRequest(), metadata=key)
        case "apikeys":
            apikeys = apikeys_pb2_grpc.APIKeysServiceStub(channel)
            request = apikeys_pb2.ListAPIKeysRequest(wallet_address=wallet)
            return partial(apikeys.ListAPIKeys, request, metadata=key)
        case "mining":
            mining = mining_pb2_grpc.MiningServiceStub(channel)
            summary = mining_pb2.GetNetworkSummaryRequest()
            return partial(mining.GetNetworkSummary, summary, metadata=key)
        case "credits":
            credits = credits_pb2_grpc.CreditsServiceStub(channel)
            balance = credits_pb2.GetBalanceRequest(wallet_address=wallet)
            return partial(credits.GetBalance, balance, metadata=key)
        case "serving":
            serving = serving_pb2_grpc.ServingServiceStub(channel)
            nodes = serving_pb2.ListServingNodesRequest()
            return partial(serving.ListServingNodes, nodes, metadata=key)
        case _:
            raise ValueError(f"no keyed read of {service} here")


@pytest.mark.parametrize("service", NAMES)
async def test_every_service_refuses_a_revoked_key_once_redis_announces_it(
    redis_stack: LocalStack, service: str
) -> None:
    wallet = new_wallet_address()
    async with (
        grpc.aio.insecure_channel(redis_stack.grpc_target("apikeys")) as apikeys_channel,
        grpc.aio.insecure_channel(redis_stack.grpc_target(service)) as service_channel,
    ):
        apikeys = apikeys_pb2_grpc.APIKeysServiceStub(apikeys_channel)
        created = await apikeys.CreateAPIKey(
            apikeys_pb2.CreateAPIKeyRequest(wallet_address=wallet, name="ci"), metadata=INTERNAL
        )
        call = keyed_call(service, service_channel, wallet, created.secret)
        await call()  # accepted, and so cached for the long TTL

        await apikeys.RevokeAPIKey(
            apikeys_pb2.RevokeAPIKeyRequest(wallet_address=wallet, key_id=created.api_key.key_id),
            metadata=INTERNAL,
        )
        _, reason = await first_refusal_after(call, GIVE_UP_SECONDS)

    assert reason == "API_KEY_REVOKED"
