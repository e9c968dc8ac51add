"""UsersService: each RPC converts the request, calls the repository (and the peers),
converts the result."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from r3mes.users.v1 import users_pb2, users_pb2_grpc

from services.core.clock import Clock
from services.core.db import Database
from services.users.domain import Balance, MiningStatus, User
from services.users.peers import Peers
from services.users.repository import UserRepository

Context = grpc.aio.ServicerContext[Any, Any]


class UsersServicer(users_pb2_grpc.UsersServiceServicer):
    def __init__(self, database: Database, peers: Peers, clock: Clock) -> None:
        self._database = database
        self._peers = peers
        self._clock = clock

    async def CreateUser(
        self, request: users_pb2.CreateUserRequest, context: Context
    ) -> users_pb2.CreateUserResponse:
        new_user = User(wallet_address=request.wallet_address, created_at=self._clock())
        async with self._database.transaction() as connection:
            user = await UserRepository(connection).add(new_user)
        return users_pb2.CreateUserResponse(user=user_message(user, None, None))

    async def GetUser(
        self, request: users_pb2.GetUserRequest, context: Context
    ) -> users_pb2.GetUserResponse:
        async with self._database.transaction(read_only=True) as connection:
            user = await UserRepository(connection).get(request.wallet_address)
        balance, mining = await asyncio.gather(
            self._peers.balance(user.wallet_address), self._peers.mining_status(user.wallet_address)
        )
        return users_pb2.GetUserResponse(user=user_message(user, balance, mining))

    async def GetNetworkStats(
        self, request: users_pb2.GetNetworkStatsRequest, context: Context
    ) -> users_pb2.GetNetworkStatsResponse:
        async with self._database.transaction(read_only=True) as connection:
            total_users = await UserRepository(connection).count()
        credits_total, mining = await asyncio.gather(
            self._peers.credits_total(), self._peers.mining_summary()
        )
        stats = users_pb2.GetNetworkStatsResponse(total_users=total_users)
        if credits_total is not None:
            stats.total_micro_credits = credits_total
        if mining is not None:
            stats.active_miners = mining.active_miners
            stats.block_height = mining.block_height
        return stats


def user_message(
    user: User, balance: Balance | None, mining: MiningStatus | None
) -> users_pb2.User:
    """The user as sent; what a peer could not tell is left out (unknown), never zero."""
    message = users_pb2.User(
        wallet_address=user.wallet_address, create_time=_timestamp(user.created_at)
    )
    if balance is not None:
        message.available_micro_credits = balance.available_micro_credits
        message.reserved_micro_credits = balance.reserved_micro_credits
    if mining is not None:
        message.is_miner = mining.is_miner
        if mining.last_mining_time is not None:
            message.last_mining_time.CopyFrom(_timestamp(mining.last_mining_time))
    return message


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp
