"""UsersService: each RPC converts the request, calls its use case, converts the result."""

from __future__ import annotations

from typing import Any

import grpc
from r3mes.users.v1 import users_pb2, users_pb2_grpc

from services.core.wire import timestamp
from services.users.domain import NetworkStats, UserProfile
from services.users.usecases import UsersUseCases

Context = grpc.aio.ServicerContext[Any, Any]


class UsersServicer(users_pb2_grpc.UsersServiceServicer):
    def __init__(self, use_cases: UsersUseCases) -> None:
        self._use_cases = use_cases

    async def CreateUser(
        self, request: users_pb2.CreateUserRequest, context: Context
    ) -> users_pb2.CreateUserResponse:
        profile = await self._use_cases.create_user(request.wallet_address)
        return users_pb2.CreateUserResponse(user=user_message(profile))

    async def GetUser(
        self, request: users_pb2.GetUserRequest, context: Context
    ) -> users_pb2.GetUserResponse:
        profile = await self._use_cases.get_user(request.wallet_address)
        return users_pb2.GetUserResponse(user=user_message(profile))

    async def GetNetworkStats(
        self, request: users_pb2.GetNetworkStatsRequest, context: Context
    ) -> users_pb2.GetNetworkStatsResponse:
        return network_stats_message(await self._use_cases.network_stats())


def user_message(profile: UserProfile) -> users_pb2.User:
    """The user as sent; what a peer could not tell is left out (unknown), never zero."""
    user, balance, mining = profile.user, profile.balance, profile.mining
    message = users_pb2.User(
        wallet_address=user.wallet_address, create_time=timestamp(user.created_at)
    )
    if balance is not None:
        message.available_micro_credits = balance.available_micro_credits
        message.reserved_micro_credits = balance.reserved_micro_credits
    if mining is not None:
        message.is_miner = mining.is_miner
        if mining.last_mining_time is not None:
            message.last_mining_time.CopyFrom(timestamp(mining.last_mining_time))
    return message


def network_stats_message(stats: NetworkStats) -> users_pb2.GetNetworkStatsResponse:
    message = users_pb2.GetNetworkStatsResponse(total_users=stats.total_users)
    if stats.total_micro_credits is not None:
        message.total_micro_credits = stats.total_micro_credits
    if stats.mining is not None:
        message.active_miners = stats.mining.active_miners
        message.block_height = stats.mining.block_height
    return message
