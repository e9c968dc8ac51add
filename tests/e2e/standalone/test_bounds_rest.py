"""Sums that would pass what they are stored or sent in, end to end through Envoy, on SQLite and
PostgreSQL: writes past the bounds are refused with a reason, and every public read answers 200
with figures that are exact, or saturated and flagged."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
import httpx
import pytest
from r3mes.credits.v1 import credits_pb2, credits_pb2_grpc
from r3mes.mining.v1 import mining_pb2, mining_pb2_grpc

from runner.local_stack import LocalStack, running_stack
from services.core.settings import Settings
from services.core.testing import new_wallet_address
from services.credits.domain import BALANCE_LIMIT, INT64_MAX
from services.mining.domain import EARNINGS_LIMIT, MAX_BATCH_SIZE, MAX_HASHRATE
from tests.conftest import ENGINES, POSTGRES_URL, RUN_SUFFIX, settings_for
from tests.e2e.conftest import INTERNAL_TOKEN
from tests.integration.credits_support import seed_grants
from tests.integration.mining_support import stats
from tests.integration.rpc import failure_of

INTERNAL = (("x-r3mes-internal-token", INTERNAL_TOKEN),)


@dataclass
class Suite:
    stack: LocalStack
    storage: Settings  # the stack's own storage, for states out of reach call by call


@pytest.fixture(scope="module", params=ENGINES)
def suite(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Suite]:
    if request.param == "sqlite":
        stack: LocalStack = request.getfixturevalue("stack")
        yield Suite(stack, settings_for("sqlite", stack.work_dir / "data", suffix=""))
        return
    request.getfixturevalue("postgres_available")  # drops the run's schemas at the end
    work_dir: Path = tmp_path_factory.mktemp("e2e-postgres")
    suffix = f"{RUN_SUFFIX}_bounds"
    environment = {
        "R3MES_DATABASE_URL": POSTGRES_URL,
        "R3MES_SCHEMA_SUFFIX": suffix,
        "R3MES_MIGRATE_ON_START": "true",
        "R3MES_RATELIMIT_BACKEND": "off",
    }
    with running_stack(
        work_dir, internal_token=INTERNAL_TOKEN, extra_environment=environment
    ) as stack:
        yield Suite(stack, settings_for("postgres", work_dir, suffix=suffix))


@pytest.fixture
async def rest(suite: Suite) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=suite.stack.rest_url, timeout=10.0) as client:
        yield client


@pytest.fixture
async def mining(suite: Suite) -> AsyncIterator[mining_pb2_grpc.MiningServiceAsyncStub]:
    async with grpc.aio.insecure_channel(suite.stack.grpc_target("mining")) as channel:
        yield mining_pb2_grpc.MiningServiceStub(channel)


async def test_ten_wallets_at_the_balance_limit_leave_the_network_credit_total_saturated(
    suite: Suite, rest: httpx.AsyncClient
) -> None:
    wallets = [new_wallet_address() for _ in range(10)]
    await seed_grants(suite.storage, datetime.now(UTC), dict.fromkeys(wallets, BALANCE_LIMIT))
    async with grpc.aio.insecure_channel(suite.stack.grpc_target("credits")) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await credits_pb2_grpc.CreditsServiceStub(channel).GrantCredits(
                credits_pb2.GrantCreditsRequest(
                    wallet_address=wallets[0], amount_micro_credits=1, idempotency_key="past-1"
                ),
                metadata=INTERNAL,
            )

    replies = [await rest.get("/v1/network/credits") for _ in range(3)]
    network = await rest.get("/v1/network/stats")
    balance = await rest.get(f"/v1/wallets/{wallets[0]}/balance")

    assert failure_of(raised.value).reason == "BALANCE_LIMIT_EXCEEDED"
    for reply in replies:
        assert reply.status_code == 200, reply.text
        assert reply.json()["total_micro_credits"] == str(INT64_MAX)
        assert reply.json()["available_micro_credits"] == str(INT64_MAX)
        assert reply.json()["saturated"] is True
    assert network.status_code == 200, network.text
    assert network.json()["total_micro_credits"] == str(INT64_MAX)
    assert balance.json()["balance"]["total_micro_credits"] == str(BALANCE_LIMIT)


async def test_a_miner_at_the_earnings_limit_is_refused_more_and_its_reads_answer(
    rest: httpx.AsyncClient, mining: mining_pb2_grpc.MiningServiceAsyncStub
) -> None:
    wallet = new_wallet_address()
    most = EARNINGS_LIMIT // MAX_BATCH_SIZE
    await mining.BatchRecordMiningStats(
        mining_pb2.BatchRecordMiningStatsRequest(
            requests=[stats(wallet, f"{wallet}-{i}", earned=most) for i in range(MAX_BATCH_SIZE)]
        ),
        metadata=INTERNAL,
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await mining.RecordMiningStats(stats(wallet, f"{wallet}-more", earned=1), metadata=INTERNAL)

    miner = await rest.get(f"/v1/miners/{wallet}/stats")
    earnings = await rest.get(f"/v1/miners/{wallet}/earnings", params={"days": 1})

    failure = failure_of(raised.value)
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "EARNINGS_LIMIT_EXCEEDED",
    )
    assert miner.status_code == 200, miner.text
    assert miner.json()["stats"]["total_earned_micro_credits"] == str(EARNINGS_LIMIT)
    assert earnings.status_code == 200, earnings.text
    assert earnings.json()["total_earned_micro_credits"] == str(EARNINGS_LIMIT)


async def test_a_hashrate_of_1_7e308_is_refused_and_the_highest_hashrates_read_finite(
    rest: httpx.AsyncClient, mining: mining_pb2_grpc.MiningServiceAsyncStub
) -> None:
    refused, first, second = (new_wallet_address() for _ in range(3))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await mining.RecordMiningStats(
            stats(refused, f"{refused}-huge", hashrate=1.7e308), metadata=INTERNAL
        )
    for wallet in (first, second):
        await mining.RecordMiningStats(
            stats(wallet, f"{wallet}-top", hashrate=MAX_HASHRATE), metadata=INTERNAL
        )

    network = await rest.get("/v1/network/mining")
    history = await rest.get(f"/v1/miners/{first}/hashrate", params={"days": 1})
    unknown = await rest.get(f"/v1/miners/{refused}/stats")

    failure = failure_of(raised.value)
    assert failure.code is grpc.StatusCode.INVALID_ARGUMENT
    assert list(failure.bad_fields) == ["hashrate"]
    assert unknown.status_code == 404, unknown.text
    assert network.status_code == 200, network.text
    hashrate = network.json()["network_hashrate"]
    assert isinstance(hashrate, float)
    assert math.isfinite(hashrate)
    assert hashrate >= 2 * MAX_HASHRATE
    assert history.status_code == 200, history.text
    [point] = history.json()["points"]
    assert (point["average_hashrate"], point["peak_hashrate"]) == (MAX_HASHRATE, MAX_HASHRATE)
