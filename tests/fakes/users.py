"""The users service's repositories in memory (services/users/repository.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sqlalchemy import ColumnElement

from services.users.domain import (
    Balance,
    Known,
    MiningStatus,
    User,
    UserAlreadyExists,
    UserNotFound,
    UserProfile,
)
from services.users.repository import (
    BalanceRepository,
    KnownRepository,
    MiningStatusRepository,
    StreamPositionRepository,
    UserRepository,
    UsersRepositories,
)
from tests.fakes.uow import FakeUnitOfWork

StateT = TypeVar("StateT")


@dataclass
class UsersState:
    users: dict[str, User] = field(default_factory=dict)
    balances: dict[str, Known[Balance]] = field(default_factory=dict)
    mining_statuses: dict[str, Known[MiningStatus]] = field(default_factory=dict)
    positions: dict[str, str] = field(default_factory=dict)


class FakeUsers(UserRepository):
    def __init__(self, state: UsersState) -> None:
        self._state = state
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

    async def profile(self, wallet_address: str) -> UserProfile:
        balance = self._state.balances.get(wallet_address)
        mining = self._state.mining_statuses.get(wallet_address)
        return UserProfile(
            await self.get(wallet_address),
            None if balance is None else balance.state,
            None if mining is None else mining.state,
        )

    async def count(self, *conditions: ColumnElement[bool]) -> int:
        if conditions:
            raise NotImplementedError("the fake counts every user, without conditions")
        return len(self._users)


class KnownInMemory(KnownRepository[StateT], Generic[StateT]):
    """The newest version of each wallet wins; a seed (version 0) only fills a gap."""

    def __init__(self, rows: dict[str, Known[StateT]]) -> None:
        self._rows = rows

    async def apply(self, known: Sequence[Known[StateT]]) -> None:
        for k in known:
            kept = self._rows.get(k.wallet_address)
            if kept is None or kept.version < k.version:
                self._rows[k.wallet_address] = k

    async def seed(self, wallet_address: str, state: StateT) -> None:
        self._rows.setdefault(wallet_address, Known(wallet_address, 0, state))

    async def forget(self) -> None:
        self._rows.clear()


class FakeBalances(KnownInMemory[Balance], BalanceRepository):
    pass


class FakeMiningStatuses(KnownInMemory[MiningStatus], MiningStatusRepository):
    pass


class FakePositions(StreamPositionRepository):
    def __init__(self, positions: dict[str, str]) -> None:
        self._positions = positions

    async def of(self, stream: str) -> str | None:
        return self._positions.get(stream)

    async def save(self, stream: str, position: str) -> None:
        self._positions[stream] = position


def users_repositories(state: UsersState) -> UsersRepositories:
    return UsersRepositories(
        users=FakeUsers(state),
        balances=FakeBalances(state.balances),
        mining_statuses=FakeMiningStatuses(state.mining_statuses),
        positions=FakePositions(state.positions),
    )


def users_unit_of_work() -> FakeUnitOfWork[UsersState, UsersRepositories]:
    return FakeUnitOfWork("users", UsersState(), users_repositories)
