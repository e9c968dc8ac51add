"""What the mining tests share: a running mining service on a fake clock, and request builders."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from r3mes.mining.v1 import mining_pb2, mining_pb2_grpc
from sqlalchemy import func, select

from services.core.db import Database
from services.core.lifecycle import ServiceServer
from services.core.settings import Settings
from services.core.testing import FakeClock, running_server
from services.mining import tables
from services.mining.server import create_server
from tests.conftest import INTERNAL_TOKEN

INTERNAL = (("x-r3mes-internal-token", INTERNAL_TOKEN),)


@dataclass
class Mining:
    server: ServiceServer
    stub: mining_pb2_grpc.MiningServiceAsyncStub
    clock: FakeClock
    settings: Settings
    channel: grpc.aio.Channel

    async def health(self, service: str = "") -> int:
        """The gRPC health status of `service` (a background job: `mining.<job>`)."""
        request = health_pb2.HealthCheckRequest(service=service)
        status: int = (await health_pb2_grpc.HealthStub(self.channel).Check(request)).status
        return status

    async def raw_report_count(self) -> int:
        """Raw reports as stored (what pruning removes), read beside the service."""
        database = Database.from_settings(self.settings, "mining")
        try:
            async with database.transaction(read_only=True) as connection:
                statement = select(func.count()).select_from(tables.reports)
                return int((await connection.execute(statement)).scalar_one())
        finally:
            await database.dispose()


@asynccontextmanager
async def running_mining(settings: Settings, clock: FakeClock) -> AsyncIterator[Mining]:
    async with running_server(partial(create_server, clock=clock), settings, "mining") as (
        server,
        channel,
    ):
        yield Mining(server, mining_pb2_grpc.MiningServiceStub(channel), clock, settings, channel)


async def seed_earnings(mining: Mining, earned: Mapping[str, int]) -> None:
    """Miners that already earned these amounts (each at most the limit) in one report each, now:
    totals and today's rollup written straight to storage, as recording would, for states too
    costly to reach call by call."""
    now = mining.clock()
    database = Database.from_settings(mining.settings, "mining")
    try:
        async with database.transaction() as connection:
            await connection.execute(
                tables.miners.insert(),
                [
                    {
                        "wallet_address": wallet,
                        "first_report_time": now,
                        "last_report_time": now,
                        "last_hashrate": 0.0,
                        "total_earned_micro_credits": amount,
                        "report_count": 1,
                    }
                    for wallet, amount in earned.items()
                ],
            )
            await connection.execute(
                tables.day_rollups.insert(),
                [
                    {
                        "wallet_address": wallet,
                        "day": now.date(),
                        "report_count": 1,
                        "earned_micro_credits": amount,
                        "hashrate_sum": 0.0,
                        "hashrate_max": 0.0,
                    }
                    for wallet, amount in earned.items()
                ],
            )
    finally:
        await database.dispose()


def timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def stats(
    wallet: str,
    key: str,
    *,
    hashrate: float = 100.0,
    earned: int = 1_000,
    observe_time: datetime | None = None,
) -> mining_pb2.RecordMiningStatsRequest:
    request = mining_pb2.RecordMiningStatsRequest(
        wallet_address=wallet, hashrate=hashrate, earned_micro_credits=earned, idempotency_key=key
    )
    if observe_time is not None:
        request.observe_time.CopyFrom(timestamp(observe_time))
    return request


def block(
    height: int, miner: str, *, key: str | None = None, block_time: datetime, reward: int = 5
) -> mining_pb2.RecordBlockRequest:
    return mining_pb2.RecordBlockRequest(
        height=height,
        block_hash=f"{height:064x}",
        miner_wallet_address=miner,
        reward_micro_credits=reward,
        block_time=timestamp(block_time),
        idempotency_key=key or f"block-{height}",
    )


async def record(mining: Mining, *requests: mining_pb2.RecordMiningStatsRequest) -> None:
    await mining.stub.BatchRecordMiningStats(
        mining_pb2.BatchRecordMiningStatsRequest(requests=list(requests)), metadata=INTERNAL
    )


def grpc_error_metadata(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """The ErrorInfo metadata of a failed call."""
    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return dict(info.metadata)
    raise AssertionError("no ErrorInfo")
