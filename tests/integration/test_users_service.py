"""The users service through a real server and channel, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial

import grpc
import pytest
from r3mes.users.v1 import users_pb2, users_pb2_grpc

from services.core.settings import Settings
from services.core.testing import FakeClock, new_wallet_address, running_server
from services.users.server import create_server
from tests.integration.rpc import failure_of


@pytest.fixture
async def users(settings: Settings) -> AsyncIterator[users_pb2_grpc.UsersServiceAsyncStub]:
    async with running_server(create_server, settings, "users") as (_, channel):
        yield users_pb2_grpc.UsersServiceStub(channel)


async def test_a_created_user_can_be_read_back(users: users_pb2_grpc.UsersServiceAsyncStub) -> None:
    wallet = new_wallet_address()

    created = await users.CreateUser(users_pb2.CreateUserRequest(wallet_address=wallet))
    read = await users.GetUser(users_pb2.GetUserRequest(wallet_address=wallet))

    assert created.user.wallet_address == wallet
    assert read.user.wallet_address == wallet
    assert read.user.create_time == created.user.create_time
    assert read.user.create_time.seconds > 0
    # No credits or mining service answers here: their fields are unknown, not zero.
    assert not read.user.HasField("available_micro_credits")
    assert not read.user.HasField("is_miner")


async def test_registering_a_wallet_twice_is_already_exists(
    users: users_pb2_grpc.UsersServiceAsyncStub,
) -> None:
    wallet = new_wallet_address()
    await users.CreateUser(users_pb2.CreateUserRequest(wallet_address=wallet))

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await users.CreateUser(users_pb2.CreateUserRequest(wallet_address=wallet))

    failure = failure_of(raised.value)
    assert failure.code is grpc.StatusCode.ALREADY_EXISTS
    assert failure.reason == "USER_ALREADY_EXISTS"
    assert failure.domain == "users.r3mes.network"


async def test_an_unknown_wallet_is_not_found(users: users_pb2_grpc.UsersServiceAsyncStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await users.GetUser(users_pb2.GetUserRequest(wallet_address=new_wallet_address()))

    failure = failure_of(raised.value)
    assert failure.code is grpc.StatusCode.NOT_FOUND
    assert failure.reason == "USER_NOT_FOUND"


@pytest.mark.parametrize(
    "bad_address",
    [
        "remes1notanaddress",
        "cosmos1qypqxpq9qcrsszg2pvxq6rs0zqg3yyc5lzv7xu",
        "REMES1QQQSYQCYQ5RQWZQFPG9SCRGWPUGPZYSN3RKH3G",
    ],
)
async def test_a_bad_wallet_address_is_invalid_argument_naming_the_field_and_stores_nothing(
    users: users_pb2_grpc.UsersServiceAsyncStub, bad_address: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await users.CreateUser(users_pb2.CreateUserRequest(wallet_address=bad_address))

    failure = failure_of(raised.value)
    assert failure.code is grpc.StatusCode.INVALID_ARGUMENT
    assert list(failure.bad_fields) == ["wallet_address"]
    stats = await users.GetNetworkStats(users_pb2.GetNetworkStatsRequest())
    assert stats.total_users == 0


async def test_a_missing_wallet_address_is_reported_as_required(
    users: users_pb2_grpc.UsersServiceAsyncStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await users.GetUser(users_pb2.GetUserRequest())

    failure = failure_of(raised.value)
    assert failure.code is grpc.StatusCode.INVALID_ARGUMENT
    assert failure.bad_fields == {"wallet_address": "is required"}


async def test_network_stats_count_registered_users(
    users: users_pb2_grpc.UsersServiceAsyncStub,
) -> None:
    for _ in range(3):
        await users.CreateUser(users_pb2.CreateUserRequest(wallet_address=new_wallet_address()))

    stats = await users.GetNetworkStats(users_pb2.GetNetworkStatsRequest())

    assert stats.total_users == 3


async def test_a_user_is_stamped_with_the_moment_the_service_registered_it(
    settings: Settings,
) -> None:
    clock = FakeClock(datetime(2026, 3, 1, 9, 30, 15, 250000, tzinfo=UTC))
    async with running_server(partial(create_server, clock=clock), settings, "users") as (_, ch):
        users = users_pb2_grpc.UsersServiceStub(ch)
        wallet = new_wallet_address()
        await users.CreateUser(users_pb2.CreateUserRequest(wallet_address=wallet))
        clock.advance(days=30)
        read = await users.GetUser(users_pb2.GetUserRequest(wallet_address=wallet))

    assert read.user.create_time.ToDatetime(UTC) == datetime(2026, 3, 1, 9, 30, 15, 250000, UTC)
