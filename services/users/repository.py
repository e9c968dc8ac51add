"""Queries of the users schema."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.core.errors import AlreadyExists
from services.core.repository import BaseRepository
from services.users import tables
from services.users.domain import User, UserAlreadyExists, UserNotFound


class UserRepository(BaseRepository[User]):
    table = tables.users

    def to_domain(self, row: Row[Any]) -> User:
        return User(wallet_address=row.wallet_address, created_at=row.created_at)

    async def add(self, user: User) -> User:
        try:
            return await self.insert(
                {"wallet_address": user.wallet_address, "created_at": user.created_at}
            )
        except AlreadyExists as exc:
            raise UserAlreadyExists(user.wallet_address) from exc

    async def get(self, wallet_address: str) -> User:
        user = await self.find(wallet_address=wallet_address)
        if user is None:
            raise UserNotFound(wallet_address)
        return user


@dataclass(frozen=True)
class UsersRepositories:
    """Every repository of the users schema, on one unit of work's connection."""

    users: UserRepository

    @classmethod
    def on(cls, connection: AsyncConnection) -> UsersRepositories:
        return cls(users=UserRepository(connection))
