"""Rate limits through Envoy: 429 with the IETF draft headers after exactly the policy's count,
per wallet whatever its address, and the count holds with two replicas of a service sharing one
Redis (this module's own). Only the gateway names a caller's address: a process calling a
service directly from loopback is charged to loopback whatever it forwards."""

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
from r3mes.apikeys.v1 import apikeys_pb2, apikeys_pb2_grpc
from r3mes.users.v1 import users_pb2, users_pb2_grpc

from gateway.paths import ROOT
from runner.local_stack import LocalStack, grpc_serving, running_stack
from runner.run import development_environment
from services.core import validators
from services.core.ports import free_port
from services.core.settings import Settings
from services.core.testing import RedisServer
from services.core.tls import client_context
from tests.e2e.test_apikeys_rest import first_key
from tests.integration.apikeys_support import SigningWallet, as_bearer, as_key
from tests.integration.ratelimited import quota_subjects, says_ratelimit

# Per hour: no call is refilled while a slow machine runs the test. Every policy a hosted
# service's proto declares is defined (chat: serving's), or the services refuse to start.
POLICIES = """
policies:
  credentials: 5/hour
  read: 4/hour
  write: 20/minute
  chat: 20/minute
  auth_failures: 3/hour
default: write
failed_authentication: auth_failures
methods:
  r3mes.users.v1.UsersService.GetNetworkStats: read
  r3mes.apikeys.v1.APIKeysService.CreateAPIKey: credentials
  r3mes.apikeys.v1.APIKeysService.CreateChallenge: credentials
  r3mes.apikeys.v1.APIKeysService.CreateAPIKeyWithSignature: credentials
"""

HTTP_OF = {grpc.StatusCode.OK: 200, grpc.StatusCode.RESOURCE_EXHAUSTED: 429}


@dataclass
class Stack:
    gateway: LocalStack
    second_apikeys: str  # a second replica of apikeys, sharing the stack's Redis


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
        with (work_dir / "apikeys-2.log").open("wb") as log:
            replica = subprocess.Popen(
                [sys.executable, "-m", "services.apikeys"],
                cwd=ROOT,
                env={**running.environment, "R3MES_APIKEYS_PORT": str(port)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            target = f"127.0.0.1:{port}"
            for _ in range(600):
                if grpc_serving(target) or replica.poll() is not None:
                    break
                time.sleep(0.1)
            assert replica.poll() is None, (work_dir / "apikeys-2.log").read_text()
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
    said = [reply.headers["ratelimit"] for reply in replies]
    assert all(
        says_ratelimit(header, "read", remaining, reset)
        for header, (remaining, reset) in zip(
            said, [(3, 900), (2, 1800), (1, 2700), (0, 3600), (0, 3600)], strict=True
        )
    ), said
    refused = replies[-1]
    assert refused.headers["retry-after"] == "900"


async def test_a_client_guessing_keys_gets_its_allowance_of_401s_then_429_with_retry_info(
    stack: Stack,
) -> None:
    async with rest_from(stack, "127.0.0.3") as rest:
        replies = [
            await rest.get(
                "/v1/network/stats",
                headers=dict(as_bearer(validators.new_api_key())),  # never issued
            )
            for _ in range(5)
        ]

    assert [reply.status_code for reply in replies] == [401, 401, 401, 429, 429]
    refused = replies[-1]
    assert refused.headers["ratelimit-policy"] == '"auth_failures";q=3;w=3600'
    assert refused.headers["retry-after"] == "1200"
    details = {d["@type"].rsplit(".", 1)[-1]: d for d in refused.json()["details"]}
    assert details["ErrorInfo"]["reason"] == "RATE_LIMITED"
    # One failure comes back every 1200 s; a little of it passed during the calls.
    assert 1190 < float(details["RetryInfo"]["retry_delay"].removesuffix("s")) <= 1200
    assert [v["subject"] for v in details["QuotaFailure"]["violations"]] == ["ip:127.0.0.3"]


async def test_one_wallet_gets_exactly_its_quota_of_keys_across_addresses_and_replicas(
    stack: Stack,
) -> None:
    """CreateAPIKey for one wallet, alternating between the replica behind the gateway (from a
    new client address every call) and a second one reached directly: five in all, then 429
    naming the wallet; another wallet is unaffected."""
    wallet, other = SigningWallet(), SigningWallet()
    async with rest_from(stack, "127.0.0.10") as rest:  # two anonymous credential calls each
        key, other_key = await first_key(rest, wallet), await first_key(rest, other)
    path = f"/v1/wallets/{wallet.address}/apikeys"
    replies: list[httpx.Response] = []
    codes: list[int] = []
    async with grpc.aio.insecure_channel(stack.second_apikeys) as channel:
        second = apikeys_pb2_grpc.APIKeysServiceStub(channel)
        for i in range(4):
            async with rest_from(stack, f"127.0.1.{i}") as rest:
                reply = await rest.post(
                    path, json={"name": f"gw{i}"}, headers=dict(as_bearer(key["secret"]))
                )
            replies.append(reply)
            codes.append(reply.status_code)
            request = apikeys_pb2.CreateAPIKeyRequest(wallet_address=wallet.address, name=f"r{i}")
            call = second.CreateAPIKey(request, metadata=as_key(key["secret"]))
            with contextlib.suppress(grpc.aio.AioRpcError):
                await call
            codes.append(HTTP_OF[await call.code()])
    async with rest_from(stack, "127.0.1.9") as rest:
        unaffected = await rest.post(
            f"/v1/wallets/{other.address}/apikeys",
            json={"name": "x"},
            headers=dict(as_bearer(other_key["secret"])),
        )

    assert codes == [200, 200, 200, 200, 200, 429, 429, 429]
    refused = replies[-1]
    assert refused.headers["ratelimit-policy"] == '"credentials";q=5;w=3600'
    assert says_ratelimit(refused.headers["ratelimit"], "credentials", 0, 3600), refused.headers
    assert refused.headers["retry-after"] == "720"
    body = refused.json()
    assert body["code"] == 8  # RESOURCE_EXHAUSTED
    quota = next(d for d in body["details"] if d["@type"].endswith("google.rpc.QuotaFailure"))
    assert [v["subject"] for v in quota["violations"]] == [f"wallet:{wallet.address}"]
    assert unaffected.status_code == 200, unaffected.text
    assert says_ratelimit(unaffected.headers["ratelimit"], "credentials", 4, 720), (
        unaffected.headers
    )


@pytest.fixture(scope="module")
def make_run_defaults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A stack with the rate limits `make run` applies when the developer chose none."""
    environment = development_environment(Settings(ratelimit_policies_file=None))
    with running_stack(
        tmp_path_factory.mktemp("make-run-limits"),
        internal_token="e2e-token",
        extra_environment=environment,
    ) as running:
        yield running


async def test_a_newcomer_on_make_runs_defaults_tries_the_signing_flow_four_times_in_a_minute(
    make_run_defaults: LocalStack,
) -> None:
    """Eight credential calls from 127.0.0.1, where production's policy allows five a minute
    to the one address every local client shares; still limited, with the policy in the headers."""
    async with httpx.AsyncClient(
        base_url=make_run_defaults.rest_url, timeout=10.0, verify=client_context()
    ) as rest:
        keys = [await first_key(rest, SigningWallet()) for _ in range(4)]
        challenged = await rest.post(f"/v1/wallets/{SigningWallet().address}/challenges", json={})

    assert len({key["secret"] for key in keys}) == 4
    assert challenged.status_code == 200
    assert challenged.headers["ratelimit-policy"] == '"credentials";q=60;w=60'


async def test_a_direct_call_from_loopback_is_charged_to_loopback_whatever_address_it_forwards(
    stack: Stack,
) -> None:
    """GetNetworkStats (4 an hour) straight to the users service from 127.0.0.1, each call
    naming a new client in x-forwarded-for, half without the gateway secret and half with a
    wrong one: four pass, the fifth is refused on 127.0.0.1's bucket. A client calling through
    Envoy is still its own bucket, not the exhausted one of Envoy's address (127.0.0.1)."""
    codes: list[grpc.StatusCode] = []
    refusal: grpc.aio.AioRpcError | None = None
    async with grpc.aio.insecure_channel(stack.gateway.grpc_target("users")) as channel:
        users = users_pb2_grpc.UsersServiceStub(channel)
        for i in range(5):
            forged = [("x-forwarded-for", f"198.51.100.{i}")]
            if i % 2:
                forged.append(("x-r3mes-gateway-secret", "not-the-gateway-secret"))
            try:
                await users.GetNetworkStats(users_pb2.GetNetworkStatsRequest(), metadata=forged)
                codes.append(grpc.StatusCode.OK)
            except grpc.aio.AioRpcError as error:
                codes.append(error.code())
                refusal = error
    async with rest_from(stack, "127.0.0.3") as rest:
        through_gateway = await rest.get("/v1/network/stats")

    assert codes == [grpc.StatusCode.OK] * 4 + [grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert refusal is not None
    assert quota_subjects(refusal) == ["ip:127.0.0.1"]
    assert through_gateway.status_code == 200
    assert says_ratelimit(through_gateway.headers["ratelimit"], "read", 3, 900)


async def test_the_gateway_secret_appears_in_no_response_and_no_log(stack: Stack) -> None:
    secret = stack.gateway.environment["R3MES_GATEWAY_SECRET"]
    async with rest_from(stack, "127.0.0.4") as rest:
        reply = await rest.get("/v1/network/stats")

    assert reply.status_code == 200
    assert "x-r3mes-gateway-secret" not in reply.headers
    assert secret not in str(reply.headers)
    assert secret not in reply.text
    for started in stack.gateway.started:
        assert secret not in stack.gateway.log_of(started.name), started.name
