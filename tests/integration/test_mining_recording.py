"""Recording stats reports, one or a batch: idempotent, all or nothing, bad entries named."""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta

import grpc
import pytest
from r3mes.mining.v1 import mining_pb2

from services.core.testing import new_wallet_address
from tests.integration.mining_support import (
    INTERNAL,
    Mining,
    grpc_error_metadata,
    record,
    stats,
)
from tests.integration.rpc import failure_of


async def miner_stats(mining: Mining, wallet: str) -> mining_pb2.MinerStats:
    response = await mining.stub.GetMinerStats(
        mining_pb2.GetMinerStatsRequest(wallet_address=wallet)
    )
    return response.stats


async def test_a_recorded_report_makes_the_wallet_a_miner_with_its_totals(mining: Mining) -> None:
    wallet = new_wallet_address()
    observed = mining.clock.now - timedelta(minutes=2)

    response = await mining.stub.RecordMiningStats(
        stats(wallet, "r1", hashrate=250.5, earned=1_500, observe_time=observed), metadata=INTERNAL
    )
    read = await miner_stats(mining, wallet)

    assert response.report.wallet_address == wallet
    assert response.report.observe_time.ToDatetime().replace(tzinfo=observed.tzinfo) == observed
    assert response.report.record_time.ToSeconds() == int(mining.clock.now.timestamp())
    assert read.current_hashrate == 250.5
    assert read.total_earned_micro_credits == 1_500
    assert read.report_count == 1
    assert read.active
    assert read.first_report_time == read.last_report_time == response.report.observe_time
    assert read.blocks_found == 0


async def test_a_report_without_observe_time_counts_when_it_was_received(mining: Mining) -> None:
    wallet = new_wallet_address()

    response = await mining.stub.RecordMiningStats(stats(wallet, "now"), metadata=INTERNAL)

    assert response.report.observe_time == response.report.record_time
    assert response.report.observe_time.ToSeconds() == int(mining.clock.now.timestamp())


async def test_a_repeated_report_is_recorded_once_and_answered_as_first_recorded(
    mining: Mining,
) -> None:
    wallet = new_wallet_address()
    first = await mining.stub.RecordMiningStats(stats(wallet, "same"), metadata=INTERNAL)
    mining.clock.advance(minutes=1)

    again = await mining.stub.RecordMiningStats(stats(wallet, "same"), metadata=INTERNAL)

    assert again.report == first.report
    read = await miner_stats(mining, wallet)
    assert (read.report_count, read.total_earned_micro_credits) == (1, 1_000)
    assert await mining.raw_report_count() == 1


async def test_a_key_reused_with_other_parameters_is_refused(mining: Mining) -> None:
    wallet = new_wallet_address()
    await mining.stub.RecordMiningStats(stats(wallet, "k", earned=5), metadata=INTERNAL)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await mining.stub.RecordMiningStats(stats(wallet, "k", earned=6), metadata=INTERNAL)

    failure = failure_of(raised.value)
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "IDEMPOTENCY_KEY_REUSED",
    )
    assert failure.domain == "mining.r3mes.network"
    assert (await miner_stats(mining, wallet)).total_earned_micro_credits == 5


@pytest.mark.parametrize(
    "hashrate", [-1.0, math.nan, math.inf, 1.7e308, math.nextafter(1e21, 2e21)]
)
async def test_a_hashrate_negative_not_finite_or_above_1e21_is_refused_and_nothing_recorded(
    mining: Mining, hashrate: float
) -> None:
    wallet = new_wallet_address()

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await mining.stub.RecordMiningStats(
            stats(wallet, "bad", hashrate=hashrate), metadata=INTERNAL
        )

    failure = failure_of(raised.value)
    assert failure.code is grpc.StatusCode.INVALID_ARGUMENT
    assert list(failure.bad_fields) == ["hashrate"]
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await miner_stats(mining, wallet)
    assert failure_of(unknown.value).reason == "MINER_NOT_FOUND"


async def test_an_observe_time_more_than_5_minutes_ahead_is_refused(mining: Mining) -> None:
    wallet = new_wallet_address()
    ahead = mining.clock.now + timedelta(minutes=5, seconds=1)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await mining.stub.RecordMiningStats(
            stats(wallet, "ahead", observe_time=ahead), metadata=INTERNAL
        )
    await mining.stub.RecordMiningStats(
        stats(wallet, "just", observe_time=ahead - timedelta(seconds=1)), metadata=INTERNAL
    )

    assert list(failure_of(raised.value).bad_fields) == ["observe_time"]
    assert (await miner_stats(mining, wallet)).report_count == 1


async def test_a_time_no_timestamp_may_hold_is_invalid_naming_the_entry(mining: Mining) -> None:
    entries = [stats(new_wallet_address(), f"t{i}") for i in range(3)]
    entries[1].observe_time.seconds = 10**12

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await record(mining, *entries)

    assert list(failure_of(raised.value).bad_fields) == ["requests[1].observe_time"]
    assert await mining.raw_report_count() == 0


async def test_a_batch_is_recorded_whole_and_answered_in_entry_order(mining: Mining) -> None:
    wallets = [new_wallet_address() for _ in range(3)]
    entries = [stats(wallets[i % 3], f"b{i}", hashrate=float(i), earned=i * 10) for i in range(9)]

    response = await mining.stub.BatchRecordMiningStats(
        mining_pb2.BatchRecordMiningStatsRequest(requests=entries), metadata=INTERNAL
    )

    assert [r.hashrate for r in response.reports] == [float(i) for i in range(9)]
    assert [r.wallet_address for r in response.reports] == [wallets[i % 3] for i in range(9)]
    first = await miner_stats(mining, wallets[0])
    assert (first.report_count, first.total_earned_micro_credits) == (3, 0 + 30 + 60)
    assert await mining.raw_report_count() == 9


async def test_a_batch_with_one_bad_entry_records_nothing_and_names_the_entry(
    mining: Mining,
) -> None:
    wallet = new_wallet_address()
    entries = [stats(wallet, f"e{i}") for i in range(5)]
    entries[3].hashrate = -2.0

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await record(mining, *entries)

    failure = failure_of(raised.value)
    assert failure.code is grpc.StatusCode.INVALID_ARGUMENT
    assert list(failure.bad_fields) == ["requests[3].hashrate"]
    assert await mining.raw_report_count() == 0


async def test_a_batch_using_one_key_twice_is_refused_naming_the_second_entry(
    mining: Mining,
) -> None:
    wallet = new_wallet_address()

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await record(mining, stats(wallet, "x"), stats(wallet, "y"), stats(wallet, "x"))

    assert list(failure_of(raised.value).bad_fields) == ["requests[2].idempotency_key"]
    assert await mining.raw_report_count() == 0


async def test_a_batch_of_more_than_1000_entries_is_refused(mining: Mining) -> None:
    wallet = new_wallet_address()

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await record(mining, *(stats(wallet, f"n{i}") for i in range(1001)))

    assert list(failure_of(raised.value).bad_fields) == ["requests"]


async def test_a_batch_whose_entry_reuses_a_key_records_nothing_and_names_the_entry_index(
    mining: Mining,
) -> None:
    wallet = new_wallet_address()
    await mining.stub.RecordMiningStats(stats(wallet, "taken", earned=1), metadata=INTERNAL)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await record(
            mining, stats(wallet, "fresh-0"), stats(wallet, "fresh-1"), stats(wallet, "taken")
        )

    failure = failure_of(raised.value)
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "IDEMPOTENCY_KEY_REUSED",
    )
    assert grpc_error_metadata(raised.value) == {"idempotency_key": "taken", "index": "2"}
    assert (await miner_stats(mining, wallet)).report_count == 1
    assert await mining.raw_report_count() == 1


async def test_batch_entries_share_the_scope_of_single_reports_and_replay_them(
    mining: Mining,
) -> None:
    wallet = new_wallet_address()
    single = await mining.stub.RecordMiningStats(stats(wallet, "one"), metadata=INTERNAL)
    mining.clock.advance(seconds=30)

    response = await mining.stub.BatchRecordMiningStats(
        mining_pb2.BatchRecordMiningStatsRequest(
            requests=[stats(wallet, "one"), stats(wallet, "two", earned=7)]
        ),
        metadata=INTERNAL,
    )

    assert response.reports[0] == single.report
    assert response.reports[1].record_time.ToSeconds() == int(mining.clock.now.timestamp())
    read = await miner_stats(mining, wallet)
    assert (read.report_count, read.total_earned_micro_credits) == (2, 1_007)


async def test_a_wallet_that_never_reported_is_miner_not_found(mining: Mining) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await miner_stats(mining, new_wallet_address())

    failure = failure_of(raised.value)
    assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, "MINER_NOT_FOUND")


@pytest.mark.parametrize("rpc", ["RecordMiningStats", "BatchRecordMiningStats", "RecordBlock"])
async def test_writes_refuse_callers_without_the_internal_token(mining: Mining, rpc: str) -> None:
    wallet = new_wallet_address()
    requests = {
        "RecordMiningStats": stats(wallet, "anon"),
        "BatchRecordMiningStats": mining_pb2.BatchRecordMiningStatsRequest(
            requests=[stats(wallet, "anon")]
        ),
        "RecordBlock": mining_pb2.RecordBlockRequest(
            height=1,
            block_hash="ab",
            miner_wallet_address=wallet,
            block_time=stats(wallet, "t", observe_time=mining.clock.now).observe_time,
            idempotency_key="anon",
        ),
    }

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await getattr(mining.stub, rpc)(requests[rpc])

    # No API key would open an internal RPC: the caller is told it is internal.
    failure = failure_of(raised.value)
    assert (failure.code, failure.reason) == (grpc.StatusCode.PERMISSION_DENIED, "INTERNAL_ONLY")
    assert await mining.raw_report_count() == 0


async def test_concurrent_repeats_of_a_batch_record_it_once_and_answer_alike(
    mining: Mining,
) -> None:
    wallet = new_wallet_address()
    request = mining_pb2.BatchRecordMiningStatsRequest(
        requests=[stats(wallet, f"c{i}", earned=i) for i in range(50)]
    )

    answers = await asyncio.gather(
        *(mining.stub.BatchRecordMiningStats(request, metadata=INTERNAL) for _ in range(4)),
        return_exceptions=True,
    )

    recorded = [a for a in answers if isinstance(a, mining_pb2.BatchRecordMiningStatsResponse)]
    # A repeat may be told to retry (ABORTED) while the first is running, never anything else.
    for answer in answers:
        if isinstance(answer, grpc.aio.AioRpcError):
            assert answer.code() is grpc.StatusCode.ABORTED
    assert recorded
    assert all(r.reports == recorded[0].reports for r in recorded)
    read = await miner_stats(mining, wallet)
    assert (read.report_count, read.total_earned_micro_credits) == (50, sum(range(50)))
    assert await mining.raw_report_count() == 50
