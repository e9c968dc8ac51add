"""A revoked key stops working in another service's process within the documented bound: the
validation cache TTL without Redis, at once (well inside a long TTL) with Redis pub/sub.

The suite runs as separate processes (gateway.local_stack, without Envoy): the key is revoked
through the apikeys process and refused by the users process."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from r3mes.apikeys.v1 import apikeys_pb2, apikeys_pb2_grpc
from r3mes.users.v1 import users_pb2, users_pb2_grpc

from gateway.local_stack import LocalStack, running_stack
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
    users: users_pb2_grpc.UsersServiceAsyncStub, secret: str, give_up_seconds: float
) -> tuple[float, str]:
    started = time.monotonic()
    while time.monotonic() - started < give_up_seconds:
        try:
            await users.GetNetworkStats(users_pb2.GetNetworkStatsRequest(), metadata=as_key(secret))
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
        elapsed, reason = await first_refusal_after(users, created.secret, bound + 5.0)

    assert reason == "API_KEY_REVOKED"
    assert elapsed <= bound, f"refused after {elapsed:.2f} s; the bound is {bound} s"
