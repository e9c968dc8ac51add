"""Earnings and hashrate histories: UTC days with the year, exact edges, gaps at zero; the
current state of a miner that stopped; pruning changes no read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from r3mes.mining.v1 import mining_pb2

from services.core.background import PeriodicJob
from services.core.settings import Settings
from services.core.testing import FakeClock, new_wallet_address
from services.mining.settings import MiningSettings
from tests.integration.mining_support import INTERNAL, Mining, record, running_mining, stats
from tests.integration.rpc import failure_of

# Just after midnight UTC on the day after 29 February 2028.
NOW = datetime(2028, 3, 1, 0, 0, 30, tzinfo=UTC)


@pytest.fixture
async def mining(settings: Settings) -> AsyncIterator[Mining]:
    async with running_mining(settings, FakeClock(NOW)) as running:
        yield running


def days_of(points: list[mining_pb2.EarningsPoint] | list[mining_pb2.HashratePoint]) -> list[str]:
    return [f"{p.date.year:04d}-{p.date.month:02d}-{p.date.day:02d}" for p in points]


async def earnings(mining: Mining, wallet: str, days: int) -> mining_pb2.GetEarningsHistoryResponse:
    request = mining_pb2.GetEarningsHistoryRequest(wallet_address=wallet, days=days)
    return await mining.stub.GetEarningsHistory(request)


async def hashrates(mining: Mining, wallet: str, days: int) -> list[mining_pb2.HashratePoint]:
    request = mining_pb2.GetHashrateHistoryRequest(wallet_address=wallet, days=days)
    return list((await mining.stub.GetHashrateHistory(request)).points)


async def test_reports_count_for_their_utc_day_at_23_59_59_and_00_00_00(mining: Mining) -> None:
    wallet = new_wallet_address()
    await record(
        mining,
        stats(
            wallet,
            "a",
            hashrate=10.0,
            earned=100,
            observe_time=datetime(2028, 2, 28, 23, 59, 59, tzinfo=UTC),
        ),
        stats(
            wallet,
            "b",
            hashrate=20.0,
            earned=200,
            observe_time=datetime(2028, 2, 29, 0, 0, 0, tzinfo=UTC),
        ),
        stats(
            wallet,
            "c",
            hashrate=40.0,
            earned=400,
            observe_time=datetime(2028, 2, 29, 23, 59, 59, tzinfo=UTC),
        ),
        stats(
            wallet,
            "d",
            hashrate=80.0,
            earned=800,
            observe_time=datetime(2028, 3, 1, 0, 0, 0, tzinfo=UTC),
        ),
    )

    history = await earnings(mining, wallet, 3)
    points = await hashrates(mining, wallet, 3)

    assert days_of(list(history.points)) == ["2028-02-28", "2028-02-29", "2028-03-01"]
    assert [p.earned_micro_credits for p in history.points] == [100, 600, 800]
    assert history.total_earned_micro_credits == 1_500
    assert days_of(points) == ["2028-02-28", "2028-02-29", "2028-03-01"]
    assert [(p.average_hashrate, p.peak_hashrate) for p in points] == [
        (10.0, 10.0),
        (30.0, 40.0),
        (80.0, 80.0),
    ]


async def test_days_without_reports_are_zero_and_the_points_are_exactly_days_oldest_first(
    mining: Mining,
) -> None:
    wallet = new_wallet_address()
    await record(
        mining,
        stats(wallet, "old", earned=5, observe_time=NOW - timedelta(days=6)),
        stats(wallet, "new", earned=7, observe_time=NOW - timedelta(days=2)),
    )

    history = await earnings(mining, wallet, 7)

    assert days_of(list(history.points)) == [
        "2028-02-24",
        "2028-02-25",
        "2028-02-26",
        "2028-02-27",
        "2028-02-28",
        "2028-02-29",
        "2028-03-01",
    ]
    assert [p.earned_micro_credits for p in history.points] == [5, 0, 0, 0, 7, 0, 0]


async def test_one_day_is_today_and_365_days_reach_back_a_year_with_the_year_in_each_date(
    mining: Mining,
) -> None:
    wallet = new_wallet_address()
    await record(
        mining,
        stats(wallet, "y", earned=3, observe_time=datetime(2027, 3, 3, 12, tzinfo=UTC)),
        stats(
            wallet, "too-old", earned=9, observe_time=datetime(2027, 3, 2, 23, 59, 59, tzinfo=UTC)
        ),
        stats(wallet, "t", earned=4, observe_time=NOW),
    )

    one = await earnings(mining, wallet, 1)
    year = await earnings(mining, wallet, 365)
    year_hashrates = await hashrates(mining, wallet, 365)

    assert days_of(list(one.points)) == ["2028-03-01"]
    assert one.total_earned_micro_credits == 4
    assert len(year.points) == len(year_hashrates) == 365
    assert days_of(list(year.points))[0] == "2027-03-03"
    assert year.points[0].earned_micro_credits == 3
    assert year.total_earned_micro_credits == 7


@pytest.mark.parametrize("days", [0, 366])
async def test_days_outside_1_to_365_are_invalid(mining: Mining, days: int) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await earnings(mining, new_wallet_address(), days)

    failure = failure_of(raised.value)
    assert failure.code is grpc.StatusCode.INVALID_ARGUMENT
    assert list(failure.bad_fields) == ["days"]


async def test_a_wallet_that_never_mined_gets_zeros(mining: Mining) -> None:
    wallet = new_wallet_address()

    history = await earnings(mining, wallet, 2)
    points = await hashrates(mining, wallet, 2)

    assert [p.earned_micro_credits for p in history.points] == [0, 0]
    assert [(p.average_hashrate, p.peak_hashrate) for p in points] == [(0.0, 0.0), (0.0, 0.0)]


async def test_a_miner_that_stopped_reads_zero_hashrate_then_inactive(mining: Mining) -> None:
    wallet = new_wallet_address()
    await mining.stub.RecordMiningStats(
        stats(wallet, "last", hashrate=500.0, observe_time=NOW),
        metadata=INTERNAL,
    )

    async def read() -> tuple[mining_pb2.MinerStats, mining_pb2.GetNetworkSummaryResponse]:
        request = mining_pb2.GetMinerStatsRequest(wallet_address=wallet)
        miner = (await mining.stub.GetMinerStats(request)).stats
        network = await mining.stub.GetNetworkSummary(mining_pb2.GetNetworkSummaryRequest())
        return miner, network

    mining.clock.advance(minutes=15)
    fresh, fresh_network = await read()
    mining.clock.advance(seconds=1)
    stale, stale_network = await read()
    mining.clock.advance(hours=24)
    gone, gone_network = await read()

    assert (fresh.current_hashrate, fresh.active) == (500.0, True)
    assert (fresh_network.network_hashrate, fresh_network.active_miners) == (500.0, 1)
    assert (stale.current_hashrate, stale.active) == (0.0, True)
    assert (stale_network.network_hashrate, stale_network.active_miners) == (0.0, 1)
    assert (gone.current_hashrate, gone.active) == (0.0, False)
    assert (gone_network.active_miners, gone_network.total_miners) == (0, 1)
    assert gone.total_earned_micro_credits == 1_000


def job_named(mining: Mining, name: str) -> PeriodicJob:
    [job] = [job for job in mining.server.jobs if job.name == name]
    return job


async def test_pruning_removes_old_raw_reports_and_leaves_every_read_unchanged(
    mining: Mining,
) -> None:
    wallet = new_wallet_address()
    retention = MiningSettings().mining_report_retention_days
    await record(
        mining,
        *(
            stats(
                wallet,
                f"p{i}",
                hashrate=float(i),
                earned=i,
                observe_time=NOW - timedelta(days=retention + i),
            )
            for i in range(1, 6)
        ),
        stats(wallet, "kept", hashrate=9.0, earned=50, observe_time=NOW - timedelta(days=1)),
    )

    async def reads() -> tuple[
        mining_pb2.GetEarningsHistoryResponse, list[mining_pb2.HashratePoint], mining_pb2.MinerStats
    ]:
        request = mining_pb2.GetMinerStatsRequest(wallet_address=wallet)
        return (
            await earnings(mining, wallet, 365),
            await hashrates(mining, wallet, 365),
            (await mining.stub.GetMinerStats(request)).stats,
        )

    before = await reads()
    assert await job_named(mining, "report-pruner").run_once()
    after = await reads()

    assert await mining.raw_report_count() == 1
    assert after == before
    assert before[0].total_earned_micro_credits == 1 + 2 + 3 + 4 + 5 + 50
