"""The users service completed by the real mining service: GetUser's is_miner and
last_mining_time, GetNetworkStats' active_miners and block_height."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import grpc
from r3mes.mining.v1 import mining_pb2, mining_pb2_grpc
from r3mes.users.v1 import users_pb2, users_pb2_grpc

from services.core.settings import Settings
from services.core.testing import FakeClock, new_wallet_address, running_server
from services.mining.server import create_server as create_mining
from services.users.server import create_server as create_users
from tests.integration.mining_support import INTERNAL, block, stats, timestamp


@asynccontextmanager
async def mining_and_users(
    settings: Settings, clock: FakeClock
) -> AsyncIterator[
    tuple[mining_pb2_grpc.MiningServiceAsyncStub, users_pb2_grpc.UsersServiceAsyncStub]
]:
    mining_server, port = await create_mining(settings.with_ports(mining=0), clock=clock)
    await mining_server.start()
    try:
        pointed = settings.with_targets(mining=f"127.0.0.1:{port}")
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as mining_channel,
            running_server(create_users, pointed, "users") as (_, users_channel),
        ):
            yield (
                mining_pb2_grpc.MiningServiceStub(mining_channel),
                users_pb2_grpc.UsersServiceStub(users_channel),
            )
    finally:
        await mining_server.stop(grace_seconds=1.0)


async def test_get_user_says_whether_the_wallet_mines_and_when_it_last_did(
    settings: Settings,
) -> None:
    clock = FakeClock()
    miner, other = new_wallet_address(), new_wallet_address()
    observed = clock.now - timedelta(minutes=3)
    async with mining_and_users(settings, clock) as (mining, users):
        for wallet in (miner, other):
            await users.CreateUser(users_pb2.CreateUserRequest(wallet_address=wallet))
        await mining.RecordMiningStats(stats(miner, "r", observe_time=observed), metadata=INTERNAL)

        mined = (await users.GetUser(users_pb2.GetUserRequest(wallet_address=miner))).user
        idle = (await users.GetUser(users_pb2.GetUserRequest(wallet_address=other))).user

    assert mined.HasField("is_miner")
    assert mined.is_miner
    assert mined.last_mining_time == timestamp(observed)
    assert idle.HasField("is_miner")
    assert not idle.is_miner
    assert not idle.HasField("last_mining_time")


async def test_network_stats_carry_active_miners_and_the_block_height_from_mining(
    settings: Settings,
) -> None:
    clock = FakeClock()
    async with mining_and_users(settings, clock) as (mining, users):
        await mining.BatchRecordMiningStats(
            mining_pb2.BatchRecordMiningStatsRequest(
                requests=[
                    stats(new_wallet_address(), "a"),
                    stats(new_wallet_address(), "b"),
                    stats(new_wallet_address(), "c", observe_time=clock.now - timedelta(days=2)),
                ]
            ),
            metadata=INTERNAL,
        )
        await mining.RecordBlock(
            block(1_234, new_wallet_address(), block_time=clock.now), metadata=INTERNAL
        )

        network = await users.GetNetworkStats(users_pb2.GetNetworkStatsRequest())

    assert network.HasField("active_miners")
    assert (network.active_miners, network.block_height) == (2, 1_234)
