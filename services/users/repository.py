"""Queries of the users schema."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import BindParameter, Row, String, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.core.errors import AlreadyExists
from services.core.repository import BaseRepository
from services.users import tables
from services.users.domain import (
    Balance,
    Known,
    MiningStatus,
    User,
    UserAlreadyExists,
    UserNotFound,
    UserProfile,
)

StateT = TypeVar("StateT")


_users, _balances, _statuses = tables.users, tables.balances, tables.mining_statuses
_WALLET: BindParameter[str] = bindparam("wallet", type_=String)
# A user with what the read model knows of it, in one statement (built once: building it costs
# about as much CPU as running it).
_PROFILE = (
    select(
        _users,
        _balances.c.available,
        _balances.c.reserved,
        _balances.c.version.label("balance_version"),
        _statuses.c.is_miner,
        _statuses.c.last_mining_time,
        _statuses.c.version.label("status_version"),
    )
    .select_from(
        _users.outerjoin(
            _balances, _balances.c.wallet_address == _users.c.wallet_address
        ).outerjoin(_statuses, _statuses.c.wallet_address == _users.c.wallet_address)
    )
    .where(_users.c.wallet_address == _WALLET)
)


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

    async def profile(self, wallet_address: str) -> UserProfile:
        """The user, with what the read model knows of it (None where it knows nothing)."""
        row = (await self.execute(_PROFILE, [{"wallet": wallet_address}])).one_or_none()
        if row is None:
            raise UserNotFound(wallet_address)
        balance = None if row.balance_version is None else Balance(row.available, row.reserved)
        mining = None
        if row.status_version is not None:
            mining = MiningStatus(row.is_miner, row.last_mining_time)
        return UserProfile(self.to_domain(row), balance, mining)


class KnownRepository(BaseRepository[Known[StateT]], Generic[StateT]):
    """Rows of the read model (services.core.events): a row is written by an event only when
    the event is newer than the row (its version higher), and by an answer of the peer
    (version 0) only when there is no row yet."""

    @abstractmethod
    def columns_of(self, state: StateT) -> dict[str, Any]:
        """The table's columns but the wallet and the version."""

    async def apply(self, known: Sequence[Known[StateT]]) -> None:
        rows = [
            {"wallet_address": k.wallet_address, **self.columns_of(k.state), "version": k.version}
            for k in known
        ]
        if not rows:
            return
        insert = self.dialect_insert()
        c = self.table.c
        await self.execute_many(
            insert.on_conflict_do_update(
                index_elements=[c.wallet_address],
                set_={name: insert.excluded[name] for name in rows[0] if name != "wallet_address"},
                where=c.version < insert.excluded.version,
            ),
            rows,
        )

    async def seed(self, wallet_address: str, state: StateT) -> None:
        """What the peer answered for a wallet the read model knew nothing of; a row written
        meanwhile (by an event: newer) is kept."""
        row = {"wallet_address": wallet_address, **self.columns_of(state), "version": 0}
        await self.insert_or_ignore(row)

    async def forget(self) -> None:
        """Every row: the wallets are then asked of the peer again (and seeded)."""
        await self.delete_matching(self.table.c.version >= 0)


class BalanceRepository(KnownRepository[Balance]):
    table = _balances

    def to_domain(self, row: Row[Any]) -> Known[Balance]:
        return Known(row.wallet_address, row.version, Balance(row.available, row.reserved))

    def columns_of(self, state: Balance) -> dict[str, Any]:
        return {
            "available": state.available_micro_credits,
            "reserved": state.reserved_micro_credits,
        }


class MiningStatusRepository(KnownRepository[MiningStatus]):
    table = _statuses

    def to_domain(self, row: Row[Any]) -> Known[MiningStatus]:
        status = MiningStatus(row.is_miner, row.last_mining_time)
        return Known(row.wallet_address, row.version, status)

    def columns_of(self, state: MiningStatus) -> dict[str, Any]:
        return {"is_miner": state.is_miner, "last_mining_time": state.last_mining_time}


class StreamPositionRepository(BaseRepository[str]):
    table = tables.stream_positions

    def to_domain(self, row: Row[Any]) -> str:
        return str(row.position)

    async def of(self, stream: str) -> str | None:
        return await self.find(stream=stream)

    async def save(self, stream: str, position: str) -> None:
        insert = self.dialect_insert()
        await self.execute(
            insert.on_conflict_do_update(
                index_elements=[self.table.c.stream], set_={"position": insert.excluded.position}
            ),
            [{"stream": stream, "position": position}],
        )


@dataclass(frozen=True)
class UsersRepositories:
    """Every repository of the users schema, on one unit of work's connection."""

    users: UserRepository
    balances: BalanceRepository
    mining_statuses: MiningStatusRepository
    positions: StreamPositionRepository

    @classmethod
    def on(cls, connection: AsyncConnection) -> UsersRepositories:
        return cls(
            users=UserRepository(connection),
            balances=BalanceRepository(connection),
            mining_statuses=MiningStatusRepository(connection),
            positions=StreamPositionRepository(connection),
        )
