"""The users service shows what the real credits service holds: GetUser and GetNetworkStats."""

from __future__ import annotations

from r3mes.users.v1 import users_pb2, users_pb2_grpc

from services.core.settings import Settings
from services.core.testing import new_wallet_address, running_server
from services.users.server import create_server as create_users_server
from tests.integration.credits_support import CREDIT, assert_invariants, running_credits


async def test_get_user_and_network_stats_show_the_credits_service_numbers(
    settings: Settings,
) -> None:
    async with running_credits(settings) as credits:
        users_settings = settings.with_targets(credits=f"127.0.0.1:{credits.port}")
        async with running_server(create_users_server, users_settings, "users") as (_, channel):
            users = users_pb2_grpc.UsersServiceStub(channel)
            wallet, other = new_wallet_address(), new_wallet_address()
            await users.CreateUser(users_pb2.CreateUserRequest(wallet_address=wallet))
            await credits.grant(wallet, 5 * CREDIT)
            await credits.grant(other, 7)
            hold = await credits.reserve(wallet, 2 * CREDIT)
            await credits.confirm(hold.reservation.reservation_id, amount=1)

            held = await credits.reserve(wallet, 1_250_000)
            user = (await users.GetUser(users_pb2.GetUserRequest(wallet_address=wallet))).user
            stats = await users.GetNetworkStats(users_pb2.GetNetworkStatsRequest())
        await assert_invariants(credits)

    assert held.balance.available_micro_credits == 5 * CREDIT - 1 - 1_250_000
    assert user.available_micro_credits == 5 * CREDIT - 1 - 1_250_000
    assert user.reserved_micro_credits == 1_250_000
    assert stats.total_micro_credits == 5 * CREDIT - 1 + 7
    assert stats.total_users == 1
    # Mining does not answer here: its fields stay unknown, never zero.
    assert not user.HasField("is_miner")


async def test_a_new_wallet_known_to_users_but_not_credits_shows_a_zero_balance(
    settings: Settings,
) -> None:
    async with running_credits(settings) as credits:
        users_settings = settings.with_targets(credits=f"127.0.0.1:{credits.port}")
        async with running_server(create_users_server, users_settings, "users") as (_, channel):
            users = users_pb2_grpc.UsersServiceStub(channel)
            wallet = new_wallet_address()
            await users.CreateUser(users_pb2.CreateUserRequest(wallet_address=wallet))
            user = (await users.GetUser(users_pb2.GetUserRequest(wallet_address=wallet))).user

    # Known to be zero (credits answered), which is not the same as unknown.
    assert user.HasField("available_micro_credits")
    assert (user.available_micro_credits, user.reserved_micro_credits) == (0, 0)
