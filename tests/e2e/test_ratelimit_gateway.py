"""Rate limits through Envoy: 429 with the IETF draft headers after exactly the policy's count,
and the count holds with two replicas of a service sharing one Redis (this module's own)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import httpx
import pytest
from r3mes.users.v1 import users_pb2, users_pb2_grpc

from gateway.local_stack import LocalStack, free_port, grpc_serving, running_stack
from gateway.render import ROOT
from services.core.testing import RedisServer, own_redis_server

# Per hour: no call is refilled while a slow machine runs the test.
POLICIES = """
policies:
  read: 4/hour
  write: 20/minute
default: write
methods:
  r3mes.users.v1.UsersService.GetNetworkStats: read
"""

HTTP_OF = {grpc.StatusCode.OK: 200, grpc.StatusCode.RESOURCE_EXHAUSTED: 429}


@dataclass
class Stack:
    gateway: LocalStack
    second_users: str  # a second replica of users, sharing the stack's Redis


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with own_redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Iterator[Stack]:
    work_dir = tmp_path_factory.mktemp("ratelimit-e2e")
    policies = work_dir / "policies.yaml"
    policies.write_text(POLICIES)
    environment = {
        "R3MES_REDIS_URL": redis_server.url,
        "R3MES_RATELIMIT_POLICIES_FILE": str(policies),
    }
    with running_stack(
        work_dir, internal_token="e2e-token", extra_environment=environment
    ) as running:
        port = free_port()
        with (work_dir / "users-2.log").open("wb") as log:
            replica = subprocess.Popen(
                [sys.executable, "-m", "services.users"],
                cwd=ROOT,
                env={**running.environment, "R3MES_USERS_PORT": str(port)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            target = f"127.0.0.1:{port}"
            for _ in range(600):
                if grpc_serving(target) or replica.poll() is not None:
                    break
                time.sleep(0.1)
            assert replica.poll() is None, (work_dir / "users-2.log").read_text()
            yield Stack(running, target)
        finally:
            replica.terminate()
            replica.wait(timeout=10)


def rest_from(stack: Stack, address: str) -> httpx.AsyncClient:
    """A REST client whose connections come from `address` (any of 127/8): Envoy tells the
    services that address, so each test has buckets of its own."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=stack.gateway.rest_url, transport=transport, timeout=10.0)


async def test_the_call_past_the_quota_is_a_429_with_the_ratelimit_headers(stack: Stack) -> None:
    async with rest_from(stack, "127.0.0.2") as rest:
        replies = [await rest.get("/v1/network/stats") for _ in range(5)]

    assert [reply.status_code for reply in replies] == [200, 200, 200, 200, 429]
    assert {reply.headers["ratelimit-policy"] for reply in replies} == {'"read";q=4;w=3600'}
    assert [reply.headers["ratelimit"] for reply in replies[:4]] == [
        '"read";r=3;t=900',
        '"read";r=2;t=1800',
        '"read";r=1;t=2700',
        '"read";r=0;t=3600',
    ]
    refused = replies[-1]
    assert refused.headers["ratelimit"] == '"read";r=0;t=3600'
    assert refused.headers["retry-after"] == "900"


async def test_two_replicas_sharing_redis_admit_the_policys_count_together(stack: Stack) -> None:
    """Calls alternate between the replica behind the gateway and a second one reached
    directly (from the gateway's address, forwarding the same client): four in all."""
    seen: list[int] = []
    async with (
        rest_from(stack, "127.0.0.3") as rest,
        grpc.aio.insecure_channel(stack.second_users) as channel,
    ):
        second = users_pb2_grpc.UsersServiceStub(channel)
        for _ in range(4):
            seen.append((await rest.get("/v1/network/stats")).status_code)
            call = second.GetNetworkStats(
                users_pb2.GetNetworkStatsRequest(), metadata=(("x-forwarded-for", "127.0.0.3"),)
            )
            with contextlib.suppress(grpc.aio.AioRpcError):
                await call
            seen.append(HTTP_OF[await call.code()])

    assert seen == [200, 200, 200, 200, 429, 429, 429, 429]
