"""Mining end to end: recorded over gRPC with the internal token, read over REST through Envoy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import httpx
from r3mes.mining.v1 import mining_pb2, mining_pb2_grpc

from runner.local_stack import LocalStack
from services.core.testing import new_wallet_address
from tests.e2e.conftest import INTERNAL_TOKEN
from tests.integration.mining_support import block, stats

INTERNAL = (("x-r3mes-internal-token", INTERNAL_TOKEN),)


def ymd(day: datetime) -> dict[str, int]:
    return {"year": day.year, "month": day.month, "day": day.day}


async def test_reports_and_blocks_recorded_over_grpc_read_back_over_rest(
    stack: LocalStack, rest: httpx.AsyncClient
) -> None:
    wallet = new_wallet_address()
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    before_midnight = midnight - timedelta(seconds=1)
    async with grpc.aio.insecure_channel(stack.grpc_target("mining")) as channel:
        mining = mining_pb2_grpc.MiningServiceStub(channel)
        await mining.BatchRecordMiningStats(
            mining_pb2.BatchRecordMiningStatsRequest(
                requests=[
                    stats(wallet, "e2e-1", hashrate=10.0, earned=100, observe_time=before_midnight),
                    stats(wallet, "e2e-2", hashrate=30.0, earned=250, observe_time=midnight),
                ]
            ),
            metadata=INTERNAL,
        )
        for height in (101, 102, 103):
            await mining.RecordBlock(block(height, wallet, block_time=midnight), metadata=INTERNAL)

    earnings = await rest.get(f"/v1/miners/{wallet}/earnings", params={"days": 3})
    hashrate = await rest.get(f"/v1/miners/{wallet}/hashrate", params={"days": 2})
    first_page = await rest.get(
        "/v1/blocks", params={"miner_wallet_address": wallet, "page_size": 2}
    )
    token = first_page.json()["next_page_token"]
    second_page = await rest.get(
        "/v1/blocks", params={"miner_wallet_address": wallet, "page_size": 2, "page_token": token}
    )
    network = await rest.get("/v1/network/mining")
    miner = await rest.get(f"/v1/miners/{wallet}/stats")

    assert earnings.status_code == 200, earnings.text
    points = earnings.json()["points"]
    assert [p["date"] for p in points] == [
        ymd(midnight - timedelta(days=2)),
        ymd(before_midnight),
        ymd(midnight),
    ]
    assert [p.get("earned_micro_credits", "0") for p in points] == ["0", "100", "250"]
    assert earnings.json()["total_earned_micro_credits"] == "350"
    assert [(p["average_hashrate"], p["peak_hashrate"]) for p in hashrate.json()["points"]] == [
        (10.0, 10.0),
        (30.0, 30.0),
    ]
    assert [b["height"] for b in first_page.json()["blocks"]] == ["103", "102"]
    assert [b["height"] for b in second_page.json()["blocks"]] == ["101"]
    assert "next_page_token" not in second_page.json() or not second_page.json()["next_page_token"]
    summary = network.json()
    assert int(summary["block_height"]) >= 103
    assert int(summary["active_miners"]) >= 1
    assert summary["latest_block_time"]
    assert miner.json()["stats"]["report_count"] == "2"
