"""Blocks: a height recorded once, listed highest first in pages, counted for their miner; the
network summary."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from r3mes.mining.v1 import mining_pb2

from services.core.testing import new_wallet_address
from tests.integration.mining_support import INTERNAL, Mining, block, record, stats
from tests.integration.rpc import failure_of


async def test_a_block_is_recorded_once_and_its_repeat_answered_as_first_recorded(
    mining: Mining,
) -> None:
    miner = new_wallet_address()
    request = block(7, miner, block_time=mining.clock.now - timedelta(seconds=5))
    request.block_hash = "ABCDEF0123"

    first = await mining.stub.RecordBlock(request, metadata=INTERNAL)
    mining.clock.advance(minutes=1)
    again = await mining.stub.RecordBlock(request, metadata=INTERNAL)

    assert again.block == first.block
    assert first.block.block_hash == "abcdef0123"
    assert first.block.record_time.ToSeconds() == int((mining.clock.now).timestamp()) - 60
    listed = await mining.stub.ListBlocks(mining_pb2.ListBlocksRequest())
    assert [b.height for b in listed.blocks] == [7]


async def test_another_key_for_a_recorded_height_is_block_already_exists(mining: Mining) -> None:
    miner = new_wallet_address()
    await mining.stub.RecordBlock(block(3, miner, block_time=mining.clock.now), metadata=INTERNAL)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await mining.stub.RecordBlock(
            block(3, miner, key="other-key", block_time=mining.clock.now), metadata=INTERNAL
        )

    failure = failure_of(raised.value)
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "BLOCK_ALREADY_EXISTS",
    )


async def test_the_same_block_key_with_other_parameters_is_refused(mining: Mining) -> None:
    miner = new_wallet_address()
    await mining.stub.RecordBlock(block(4, miner, block_time=mining.clock.now), metadata=INTERNAL)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await mining.stub.RecordBlock(
            block(4, miner, reward=6, block_time=mining.clock.now), metadata=INTERNAL
        )

    assert failure_of(raised.value).reason == "IDEMPOTENCY_KEY_REUSED"


async def test_a_block_hash_that_is_not_hex_is_invalid_and_nothing_is_recorded(
    mining: Mining,
) -> None:
    request = block(5, new_wallet_address(), block_time=mining.clock.now)
    request.block_hash = "not-hex"

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await mining.stub.RecordBlock(request, metadata=INTERNAL)

    assert list(failure_of(raised.value).bad_fields) == ["block_hash"]
    listed = await mining.stub.ListBlocks(mining_pb2.ListBlocksRequest())
    assert list(listed.blocks) == []


async def test_blocks_are_listed_highest_first_in_pages_and_by_miner(mining: Mining) -> None:
    alice, bob = new_wallet_address(), new_wallet_address()
    for height in range(1, 8):
        miner = alice if height % 2 else bob
        await mining.stub.RecordBlock(
            block(height, miner, block_time=mining.clock.now), metadata=INTERNAL
        )

    heights: list[int] = []
    token = ""
    pages = 0
    while True:
        page = await mining.stub.ListBlocks(
            mining_pb2.ListBlocksRequest(page_size=3, page_token=token)
        )
        heights += [b.height for b in page.blocks]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    alices = await mining.stub.ListBlocks(
        mining_pb2.ListBlocksRequest(miner_wallet_address=alice, page_size=2)
    )

    assert heights == [7, 6, 5, 4, 3, 2, 1]
    assert pages == 3
    assert [b.height for b in alices.blocks] == [7, 5]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        # A token of the unfiltered listing does not continue another miner's.
        await mining.stub.ListBlocks(
            mining_pb2.ListBlocksRequest(
                miner_wallet_address=bob, page_token=alices.next_page_token
            )
        )
    assert list(failure_of(raised.value).bad_fields) == ["page_token"]


async def test_blocks_found_count_in_the_miners_stats(mining: Mining) -> None:
    miner = new_wallet_address()
    await record(mining, stats(miner, "s"))
    for height in (10, 11):
        await mining.stub.RecordBlock(
            block(height, miner, block_time=mining.clock.now), metadata=INTERNAL
        )
    await mining.stub.RecordBlock(
        block(12, new_wallet_address(), block_time=mining.clock.now), metadata=INTERNAL
    )

    read = await mining.stub.GetMinerStats(mining_pb2.GetMinerStatsRequest(wallet_address=miner))

    assert read.stats.blocks_found == 2


async def test_an_empty_network_summary_is_zeros_without_a_latest_block_time(
    mining: Mining,
) -> None:
    summary = await mining.stub.GetNetworkSummary(mining_pb2.GetNetworkSummaryRequest())

    assert (summary.active_miners, summary.total_miners, summary.block_height) == (0, 0, 0)
    assert summary.network_hashrate == 0.0
    assert not summary.HasField("latest_block_time")


async def test_the_network_summary_counts_active_miners_and_the_highest_block(
    mining: Mining,
) -> None:
    now = mining.clock.now
    active, fading, gone = (new_wallet_address() for _ in range(3))
    await record(
        mining,
        stats(active, "a", hashrate=120.0, observe_time=now - timedelta(minutes=1)),
        stats(fading, "f", hashrate=80.0, observe_time=now - timedelta(hours=2)),
        stats(gone, "g", hashrate=60.0, observe_time=now - timedelta(hours=25)),
    )
    await mining.stub.RecordBlock(
        block(41, active, block_time=now - timedelta(seconds=30)), metadata=INTERNAL
    )
    await mining.stub.RecordBlock(
        block(40, active, block_time=now - timedelta(seconds=60)), metadata=INTERNAL
    )

    summary = await mining.stub.GetNetworkSummary(mining_pb2.GetNetworkSummaryRequest())

    assert (summary.active_miners, summary.total_miners) == (2, 3)
    assert summary.block_height == 41
    assert summary.network_hashrate == 120.0
    assert summary.latest_block_time.ToSeconds() == int(now.timestamp()) - 30
