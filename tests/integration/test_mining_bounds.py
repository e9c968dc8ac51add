"""What a miner may report is bounded so that no sum of reports overflows: each read answers."""

from __future__ import annotations

import grpc
import pytest
from r3mes.mining.v1 import mining_pb2

from services.core.testing import new_wallet_address
from services.mining.domain import EARNINGS_LIMIT, MAX_BATCH_SIZE, MAX_HASHRATE
from tests.integration.mining_support import (
    INTERNAL,
    Mining,
    grpc_error_metadata,
    record,
    stats,
)
from tests.integration.rpc import failure_of

MAX_EARNED = 10**15  # per report, the proto's field rule


async def at_the_earnings_limit(mining: Mining, wallet: str) -> None:
    """One full batch of the highest earnings: exactly the limit."""
    assert MAX_BATCH_SIZE * MAX_EARNED == EARNINGS_LIMIT
    await record(
        mining,
        *(stats(wallet, f"{wallet}-{i}", earned=MAX_EARNED) for i in range(MAX_BATCH_SIZE)),
    )


async def earnings(mining: Mining, wallet: str) -> tuple[int, int]:
    """(total of the miner's stats, total of its 7-day history)."""
    miner = await mining.stub.GetMinerStats(mining_pb2.GetMinerStatsRequest(wallet_address=wallet))
    history = await mining.stub.GetEarningsHistory(
        mining_pb2.GetEarningsHistoryRequest(wallet_address=wallet, days=7)
    )
    return miner.stats.total_earned_micro_credits, history.total_earned_micro_credits


async def test_earnings_up_to_the_limit_are_recorded_and_one_more_is_refused(
    mining: Mining,
) -> None:
    wallet = new_wallet_address()
    await at_the_earnings_limit(mining, wallet)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await mining.stub.RecordMiningStats(stats(wallet, "one-more", earned=1), metadata=INTERNAL)
    zero_earnings = await mining.stub.RecordMiningStats(
        stats(wallet, "nothing-earned", earned=0), metadata=INTERNAL
    )

    failure = failure_of(raised.value)
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "EARNINGS_LIMIT_EXCEEDED",
    )
    assert grpc_error_metadata(raised.value) == {
        "wallet_address": wallet,
        "limit_micro_credits": str(EARNINGS_LIMIT),
    }
    assert zero_earnings.report.earned_micro_credits == 0
    assert await earnings(mining, wallet) == (EARNINGS_LIMIT, EARNINGS_LIMIT)


async def test_a_batch_taking_one_wallet_past_the_limit_records_none_of_its_entries(
    mining: Mining,
) -> None:
    full, other = new_wallet_address(), new_wallet_address()
    await at_the_earnings_limit(mining, full)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await record(mining, stats(other, "other-1", earned=5), stats(full, "full-1", earned=1))

    assert failure_of(raised.value).reason == "EARNINGS_LIMIT_EXCEEDED"
    assert grpc_error_metadata(raised.value)["wallet_address"] == full
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await mining.stub.GetMinerStats(mining_pb2.GetMinerStatsRequest(wallet_address=other))
    assert failure_of(unknown.value).reason == "MINER_NOT_FOUND"
    # The refused keys were not spent: the same entry without the full wallet is recorded.
    await record(mining, stats(other, "other-1", earned=5))
    assert await earnings(mining, other) == (5, 5)


async def test_miners_at_the_highest_hashrate_sum_to_finite_figures(mining: Mining) -> None:
    wallets = [new_wallet_address() for _ in range(3)]
    await record(
        mining,
        *(
            stats(wallet, f"{wallet}-{i}", hashrate=MAX_HASHRATE)
            for wallet in wallets
            for i in range(4)
        ),
    )

    summary = await mining.stub.GetNetworkSummary(mining_pb2.GetNetworkSummaryRequest())
    history = await mining.stub.GetHashrateHistory(
        mining_pb2.GetHashrateHistoryRequest(wallet_address=wallets[0], days=1)
    )
    miner = await mining.stub.GetMinerStats(
        mining_pb2.GetMinerStatsRequest(wallet_address=wallets[0])
    )

    assert summary.network_hashrate == 3 * MAX_HASHRATE
    [point] = history.points
    assert (point.average_hashrate, point.peak_hashrate) == (MAX_HASHRATE, MAX_HASHRATE)
    assert miner.stats.current_hashrate == MAX_HASHRATE
