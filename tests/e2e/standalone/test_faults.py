"""Faults with replicas (docs/operations.md, "Failures and what clients see"): a split stack with
two replicas of every service behind Envoy, on a PostgreSQL and a Redis of its own (never the
machine's shared servers), under a storm of reads (through the gateway), reservations and mining
reports (straight to the services' replica lists, as internal callers reach them).

- One replica of each service is killed with SIGKILL mid-storm: with the documented retry policy
  (clients/service-config.json) every call ends OK, every reservation is confirmed, rolled back
  or expired as its caller meant, the ledger audit is exact and every report is counted once.
- PostgreSQL, then Redis, is stopped and started again under load (attempts not retried, so each
  is seen): calls fail UNAVAILABLE and never otherwise, health names the part that is down, and
  everything is back within 5 s of the server's return.

Bounded: a few workers, loopback only, a few hundred calls per phase.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import SecretStr
from r3mes.apikeys.v1 import apikeys_pb2, apikeys_pb2_grpc
from r3mes.credits.v1 import credits_pb2, credits_pb2_grpc
from r3mes.mining.v1 import mining_pb2, mining_pb2_grpc
from r3mes.serving.v1 import serving_pb2, serving_pb2_grpc
from r3mes.users.v1 import users_pb2, users_pb2_grpc

from runner.local_stack import LocalStack, running_stack
from services.core.registry import NAMES, spec_of
from services.core.settings import Settings
from services.core.testing import (
    PostgresServer,
    RedisServer,
    new_wallet_address,
    own_postgres_server,
    own_redis_server,
)
from tests.e2e.conftest import INTERNAL_TOKEN
from tests.e2e.steady_load import SteadyLoad, channel_options
from tests.integration.credits_support import CREDIT, check_invariants, stored_rows

REPLICAS = 2
CALL_TIMEOUT_SECONDS = 10.0
INTERNAL = (("x-r3mes-internal-token", INTERNAL_TOKEN),)
# Rate limits on (in Redis, so that its outage is felt) but far above the storm's pace.
POLICIES = """
policies:
  credentials: 100000/minute
  read: 100000/minute
  write: 100000/minute
  chat: 100000/minute
  auth_failures: 100000/minute
default: write
internal: exempt
failed_authentication: auth_failures
"""
WALLETS = 6
GRANTED = 1000 * CREDIT
HELD_SECONDS = 60
ABANDONED_SECONDS = 1  # holds whose caller never settles them: they must expire
CALLS_BEFORE_THE_KILL = 150
CALLS_AFTER_THE_KILL = 300
SETTLED_WITHIN_SECONDS = 20.0  # the sweeper runs every 5 s on each credits replica
BACK_WITHIN_SECONDS = 5.0  # the bound the issue sets, from the server's return
DOWN_SEEN_WITHIN_SECONDS = 10.0
CALLS_PER_PHASE = 40
OK = grpc.StatusCode.OK
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


@dataclass
class Suite:
    stack: LocalStack
    postgres: PostgresServer
    redis: RedisServer
    wallets: list[str]

    @property
    def storage(self) -> Settings:
        """What the ledger audit reads: the stack's credits schema on its PostgreSQL."""
        return Settings(
            _env_file=None,
            database_url=self.postgres.url,
            schema_suffix="",
            internal_token=SecretStr(INTERNAL_TOKEN),
        )


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    work_dir = tmp_path_factory.mktemp("faults")
    policies = work_dir / "policies.yaml"
    policies.write_text(POLICIES)
    with (
        own_postgres_server() as postgres,
        own_redis_server(work_dir) as redis,
        running_stack(
            work_dir / "stack",
            internal_token=INTERNAL_TOKEN,
            topology="split",
            replicas=REPLICAS,
            extra_environment={
                "R3MES_DATABASE_URL": postgres.url,
                # Replicas migrate in turn (an advisory lock per schema).
                "R3MES_MIGRATE_ON_START": "true",
                "R3MES_REDIS_URL": redis.url,
                "R3MES_RATELIMIT_POLICIES_FILE": str(policies),
            },
        ) as stack,
    ):
        wallets = asyncio.run(_users_with_credits(stack))
        yield Suite(stack, postgres, redis, wallets)


async def _users_with_credits(stack: LocalStack) -> list[str]:
    wallets = [new_wallet_address() for _ in range(WALLETS)]
    async with (
        grpc.aio.insecure_channel(stack.gateway_target) as gateway,
        grpc.aio.insecure_channel(stack.environment["R3MES_CREDITS_TARGET"]) as credits,
    ):
        users = users_pb2_grpc.UsersServiceStub(gateway)
        ledger = credits_pb2_grpc.CreditsServiceStub(credits)
        for wallet in wallets:
            await users.CreateUser(users_pb2.CreateUserRequest(wallet_address=wallet))
            grant = credits_pb2.GrantCreditsRequest(
                wallet_address=wallet, amount_micro_credits=GRANTED, idempotency_key=wallet
            )
            await ledger.GrantCredits(grant, metadata=INTERNAL)
    return wallets


@dataclass
class Storm:
    """What the storm did: every call's final status (`load`, in the order they ended, with the
    failures by RPC), and what its callers meant for each reservation and each miner."""

    load: SteadyLoad = field(default_factory=SteadyLoad)
    failures: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    meant: dict[str, str] = field(default_factory=dict)  # reservation id: its intended end
    captured: int = 0
    reports: Counter[str] = field(default_factory=Counter)

    async def call(self, rpc: Any, request: Any, **options: Any) -> Any:
        """The RPC's reply, or None once it has failed (after the channel's retries)."""
        call = self.load.begin()
        try:
            reply = await rpc(request, timeout=CALL_TIMEOUT_SECONDS, **options)
        except grpc.aio.AioRpcError as error:
            self.load.end(call, error.code())
            self.failures[(type(request).__name__, error.code().name, error.details() or "")] += 1
            return None
        self.load.end(call, OK)
        return reply

    def since(self, mark: int) -> Counter[grpc.StatusCode]:
        """The statuses of the calls that ended after the first `mark`."""
        return Counter(self.load.ended[mark:])


@asynccontextmanager
async def storm(suite: Suite, *, retries: bool) -> AsyncIterator[Storm]:
    """Reads of every service through the gateway; holds confirmed, rolled back or abandoned,
    and mining reports, straight to the replicas; until the block ends."""
    stack, wallets = suite.stack, suite.wallets
    options = channel_options(retries)
    result = Storm()
    stopping = asyncio.Event()
    keys = count()
    environment = stack.environment
    async with (
        grpc.aio.insecure_channel(stack.gateway_target, options=options) as gateway,
        grpc.aio.insecure_channel(environment["R3MES_CREDITS_TARGET"], options=options) as c,
        grpc.aio.insecure_channel(environment["R3MES_MINING_TARGET"], options=options) as m,
    ):
        users = users_pb2_grpc.UsersServiceStub(gateway)
        public_mining = mining_pb2_grpc.MiningServiceStub(gateway)
        apikeys = apikeys_pb2_grpc.APIKeysServiceStub(gateway)
        serving = serving_pb2_grpc.ServingServiceStub(gateway)
        credits, mining = (
            credits_pb2_grpc.CreditsServiceStub(c),
            mining_pb2_grpc.MiningServiceStub(m),
        )

        async def read(n: int) -> None:
            wallet = wallets[n % len(wallets)]
            reads: list[tuple[Any, Any]] = [
                (users.GetUser, users_pb2.GetUserRequest(wallet_address=wallet)),
                (public_mining.GetNetworkSummary, mining_pb2.GetNetworkSummaryRequest()),
                (serving.ListLoRAs, serving_pb2.ListLoRAsRequest()),
                (
                    apikeys.CreateChallenge,
                    apikeys_pb2.CreateChallengeRequest(wallet_address=wallet),
                ),
            ]
            rpc, request = reads[n % len(reads)]
            await result.call(rpc, request)

        async def hold(n: int) -> None:
            abandoned = n % 5 == 4
            reply = await result.call(
                credits.ReserveCredits,
                credits_pb2.ReserveCreditsRequest(
                    wallet_address=wallets[n % len(wallets)],
                    amount_micro_credits=CREDIT,
                    ttl_seconds=ABANDONED_SECONDS if abandoned else HELD_SECONDS,
                    idempotency_key=f"hold-{n}",
                ),
                metadata=INTERNAL,
            )
            if reply is None:
                return
            reservation = reply.reservation.reservation_id
            if abandoned:
                result.meant[reservation] = "EXPIRED"
            elif n % 2:
                result.meant[reservation] = "CONFIRMED"
                confirm = credits_pb2.ConfirmReservationRequest(
                    reservation_id=reservation, idempotency_key=f"confirm-{n}"
                )
                if await result.call(credits.ConfirmReservation, confirm, metadata=INTERNAL):
                    result.captured += CREDIT
            else:
                result.meant[reservation] = "ROLLED_BACK"
                roll_back = credits_pb2.RollbackReservationRequest(
                    reservation_id=reservation, idempotency_key=f"rollback-{n}"
                )
                await result.call(credits.RollbackReservation, roll_back, metadata=INTERNAL)

        async def report(n: int) -> None:
            wallet = wallets[n % len(wallets)]
            request = mining_pb2.RecordMiningStatsRequest(
                wallet_address=wallet,
                hashrate=100.0,
                earned_micro_credits=1,
                idempotency_key=f"r{n}",
            )
            if await result.call(mining.RecordMiningStats, request, metadata=INTERNAL):
                result.reports[wallet] += 1

        async def worker(work: Callable[[int], Awaitable[None]]) -> None:
            while not stopping.is_set():
                await work(next(keys))

        tasks = [asyncio.create_task(worker(w)) for w in (read, read, hold, hold, report)]
        try:
            yield result
        finally:
            stopping.set()
            await asyncio.gather(*tasks)


def alive_replicas(stack: LocalStack, service: str) -> dict[str, int]:
    """The replicas of `service` still running: process name and gRPC port."""
    running = {s.name for s in stack.started if s.process.poll() is None}
    return {p: port for p, port in stack.ports.replicas[service].items() if p in running}


async def health_of(stack: LocalStack, component: str) -> dict[str, str]:
    """`<service>.<component>` in the health of every running replica, by process name."""
    statuses = {}
    for service in NAMES:
        for process, port in alive_replicas(stack, service).items():
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                request = health_pb2.HealthCheckRequest(service=f"{service}.{component}")
                reply = await health_pb2_grpc.HealthStub(channel).Check(request, timeout=2)
            statuses[process] = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return statuses


async def every_one(stack: LocalStack, component: str, status: str) -> bool:
    return set((await health_of(stack, component)).values()) == {status}


async def within(seconds: float, condition: Callable[[], Awaitable[bool]]) -> bool:
    """Whether `condition` holds at some poll within `seconds`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        if await condition():
            return True
        await asyncio.sleep(0.1)
    return False


async def none_held(suite: Suite, reservations: Iterable[str]) -> bool:
    """Whether none of these reservations is still HELD in storage."""
    wanted = set(reservations)
    rows = (await stored_rows(suite.storage))["reservations"]
    return all(row.state != "HELD" for row in rows if row.reservation_id in wanted)


async def total_held_by(suite: Suite) -> int:
    """What the storm's wallets hold in all, available or reserved, as stored."""
    accounts = (await stored_rows(suite.storage))["accounts"]
    return sum(a.available + a.reserved for a in accounts if a.wallet_address in suite.wallets)


async def healthz(stack: LocalStack) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(base_url=stack.rest_url, timeout=5) as client:
        reply = await client.get("/healthz")
    return reply.status_code, reply.json()


async def test_a_replica_of_each_service_killed_mid_storm_loses_no_retried_call_and_no_credit(
    suite: Suite,
) -> None:
    stack = suite.stack
    before = await total_held_by(suite)
    async with storm(suite, retries=True) as running:
        await running.load.calls_after(CALLS_BEFORE_THE_KILL)
        for service in NAMES:
            os.kill(stack.pid_of(f"{service}-2"), signal.SIGKILL)
        await running.load.calls_after(CALLS_AFTER_THE_KILL)

    all_settled = await within(SETTLED_WITHIN_SECONDS, lambda: none_held(suite, running.meant))
    async with grpc.aio.insecure_channel(stack.environment["R3MES_CREDITS_TARGET"]) as channel:
        credits = credits_pb2_grpc.CreditsServiceStub(channel)
        rows = await check_invariants(suite.storage, credits, datetime.now(UTC))
    async with grpc.aio.insecure_channel(stack.gateway_target) as gateway:
        mining = mining_pb2_grpc.MiningServiceStub(gateway)
        counted = {
            wallet: (
                await mining.GetMinerStats(mining_pb2.GetMinerStatsRequest(wallet_address=wallet))
            ).stats.report_count
            for wallet in running.reports
        }

    assert running.load.codes() == {OK: running.load.count}, running.failures
    assert all_settled
    ended = {r.reservation_id: r.state for r in rows["reservations"]}
    assert {rid: ended[rid] for rid in running.meant} == running.meant
    assert set(Counter(running.meant.values())) == {"CONFIRMED", "ROLLED_BACK", "EXPIRED"}
    assert await total_held_by(suite) == before - running.captured
    assert counted == dict(running.reports)


async def test_postgresql_stopped_under_load_fails_calls_unavailable_and_all_is_back_in_5_s(
    suite: Suite,
) -> None:
    stack = suite.stack
    databases = [spec_of(name).database_health_name for name in NAMES]
    async with storm(suite, retries=False) as running:
        await running.load.calls_after(CALLS_PER_PHASE)
        await asyncio.to_thread(suite.postgres.stop)
        seen_down = await within(
            DOWN_SEEN_WITHIN_SECONDS, lambda: every_one(stack, "database", "NOT_SERVING")
        )
        down_status, down_report = await healthz(stack)
        await running.load.calls_after(0)
        outage = len(running.load.ended)
        await running.load.calls_after(CALLS_PER_PHASE)
        during = running.since(outage)

        await asyncio.to_thread(suite.postgres.start)

        async def back() -> bool:
            status, _ = await healthz(stack)
            return status == 200 and await every_one(stack, "database", "SERVING")

        back_in_time = await within(BACK_WITHIN_SECONDS, back)
        await running.load.calls_after(0)
        recovered = len(running.load.ended)
        await running.load.calls_after(CALLS_PER_PHASE)
        after = running.since(recovered)
    # The audit compares storage with GetBalance at one instant: not while a hold expires.
    abandoned = [rid for rid, meant in running.meant.items() if meant == "EXPIRED"]
    assert await within(SETTLED_WITHIN_SECONDS, lambda: none_held(suite, abandoned))
    async with grpc.aio.insecure_channel(stack.environment["R3MES_CREDITS_TARGET"]) as channel:
        credits = credits_pb2_grpc.CreditsServiceStub(channel)
        await check_invariants(suite.storage, credits, datetime.now(UTC))

    # Never INTERNAL, never past a deadline (DEADLINE_EXCEEDED), whenever the call ran.
    assert set(running.load.codes()) <= {OK, UNAVAILABLE}, running.failures
    assert seen_down
    assert (down_status, down_report["not_serving"]) == (503, databases)
    assert set(down_report["services"].values()) == {"SERVING"}
    assert during == {UNAVAILABLE: sum(during.values())}, running.failures
    assert back_in_time
    assert after == {OK: sum(after.values())}, running.failures


async def test_redis_stopped_under_load_fails_only_unavailable_and_the_limiter_is_back_in_5_s(
    suite: Suite,
) -> None:
    stack = suite.stack
    async with storm(suite, retries=False) as running:
        await running.load.calls_after(CALLS_PER_PHASE)
        await asyncio.to_thread(suite.redis.stop)
        seen_down = await within(
            DOWN_SEEN_WITHIN_SECONDS, lambda: every_one(stack, "ratelimit", "NOT_SERVING")
        )
        await running.load.calls_after(0)
        outage = len(running.load.ended)
        await running.load.calls_after(CALLS_PER_PHASE)
        during = running.since(outage)

        await asyncio.to_thread(suite.redis.start)
        back_in_time = await within(
            BACK_WITHIN_SECONDS, lambda: every_one(stack, "ratelimit", "SERVING")
        )
        await running.load.calls_after(0)
        recovered = len(running.load.ended)
        await running.load.calls_after(CALLS_PER_PHASE)
        after = running.since(recovered)

    assert set(running.load.codes()) <= {OK, UNAVAILABLE}, running.failures
    assert seen_down
    # Once the limiter knows Redis is gone it admits calls unchecked (R3MES_RATELIMIT_REDIS_
    # FAILURE=open, the default): nothing else needs Redis to answer.
    assert during == {OK: sum(during.values())}, running.failures
    assert back_in_time
    assert after == {OK: sum(after.values())}, running.failures
