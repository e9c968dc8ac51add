"""UsersService: each RPC converts the request, calls the repository, converts the result."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from r3mes.users.v1 import users_pb2, users_pb2_grpc

from services.core.clock import Clock
from services.core.db import Database
from services.users.domain import User
from services.users.repository import UserRepository

Context = grpc.aio.ServicerContext[Any, Any]


class UsersServicer(users_pb2_grpc.UsersServiceServicer):
    def __init__(self, database: Database, clock: Clock) -> None:
        self._database = database
        self._clock = clock

    async def CreateUser(
        self, request: users_pb2.CreateUserRequest, context: Context
    ) -> users_pb2.CreateUserResponse:
        new_user = User(wallet_address=request.wallet_address, created_at=self._clock())
        async with self._database.transaction() as connection:
            user = await UserRepository(connection).add(new_user)
        return users_pb2.CreateUserResponse(user=user_message(user))

    async def GetUser(
        self, request: users_pb2.GetUserRequest, context: Context
    ) -> users_pb2.GetUserResponse:
        async with self._database.transaction(read_only=True) as connection:
            user = await UserRepository(connection).get(request.wallet_address)
        return users_pb2.GetUserResponse(user=user_message(user))

    async def GetNetworkStats(
        self, request: users_pb2.GetNetworkStatsRequest, context: Context
    ) -> users_pb2.GetNetworkStatsResponse:
        async with self._database.transaction(read_only=True) as connection:
            total_users = await UserRepository(connection).count()
        return users_pb2.GetNetworkStatsResponse(total_users=total_users)


def user_message(user: User) -> users_pb2.User:
    created = Timestamp()
    created.FromDatetime(user.created_at)
    return users_pb2.User(wallet_address=user.wallet_address, create_time=created)
