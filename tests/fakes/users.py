"""The users service's repository in memory (services/users/repository.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import ColumnElement

from services.users.domain import User, UserAlreadyExists, UserNotFound
from services.users.repository import UserRepository, UsersRepositories
from tests.fakes.uow import FakeUnitOfWork


@dataclass
class UsersState:
    users: dict[str, User] = field(default_factory=dict)


class FakeUsers(UserRepository):
    def __init__(self, state: UsersState) -> None:
        self._users = state.users

    async def add(self, user: User) -> User:
        if user.wallet_address in self._users:
            raise UserAlreadyExists(user.wallet_address)
        self._users[user.wallet_address] = user
        return user

    async def get(self, wallet_address: str) -> User:
        user = self._users.get(wallet_address)
        if user is None:
            raise UserNotFound(wallet_address)
        return user

    async def count(self, *conditions: ColumnElement[bool]) -> int:
        if conditions:
            raise NotImplementedError("the fake counts every user, without conditions")
        return len(self._users)


def users_unit_of_work() -> FakeUnitOfWork[UsersState, UsersRepositories]:
    return FakeUnitOfWork(
        "users", UsersState(), lambda state: UsersRepositories(users=FakeUsers(state))
    )
