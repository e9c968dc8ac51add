"""A small schema of the tests' own for the kernel contract suite: accounts, an append-only
list of entries, and the idempotency table, in the `users` schema (translated to each test's
own schema on PostgreSQL, a file of its own on SQLite), so the kernel is checked apart from any
service's rules."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Integer, MetaData, Row, String, Table
from sqlalchemy.ext.asyncio import AsyncConnection

from services.core.db import Database, UtcDateTime
from services.core.idempotency import IdempotencyRepository, idempotency_table
from services.core.repository import BaseRepository
from services.core.settings import Settings
from services.core.uow import UnitOfWork
from tests.integration.storage import database_with

metadata = MetaData(schema="users")
accounts = Table(
    "kernel_accounts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("available", BigInteger, nullable=False),
    Column("reserved", BigInteger, nullable=False, default=0),
)
entries = Table(
    "kernel_entries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("label", String(100), nullable=False),
    Column("at", UtcDateTime, nullable=False),
)
idempotency_keys = idempotency_table(metadata)


@dataclass(frozen=True)
class Account:
    id: int
    available: int
    reserved: int


@dataclass(frozen=True)
class Entry:
    id: int
    label: str
    at: datetime


class AccountRepository(BaseRepository[Account]):
    table = accounts

    def to_domain(self, row: Row[Any]) -> Account:
        return Account(row.id, row.available, row.reserved)

    async def hold(self, account_id: int, amount: int) -> Account | None:
        """Move `amount` from available to reserved, only if that much is available."""
        c = accounts.c
        changed = await self.update_returning(
            c.id == account_id,
            c.available >= amount,
            values={"available": c.available - amount, "reserved": c.reserved + amount},
        )
        return changed[0] if changed else None


class EntryRepository(BaseRepository[Entry]):
    table = entries

    def to_domain(self, row: Row[Any]) -> Entry:
        return Entry(row.id, row.label, row.at)


class Idempotency(IdempotencyRepository):
    table = idempotency_keys


@dataclass(frozen=True)
class Repositories:
    accounts: AccountRepository
    entries: EntryRepository
    idempotency: Idempotency

    @classmethod
    def on(cls, connection: AsyncConnection) -> Repositories:
        return cls(
            AccountRepository(connection), EntryRepository(connection), Idempotency(connection)
        )


def kernel_database(settings: Settings) -> AbstractAsyncContextManager[Database]:
    return database_with(settings, metadata)


def unit_of_work(database: Database, attempts: int = 8) -> UnitOfWork[Repositories]:
    return UnitOfWork(database, Repositories.on, attempts=attempts)
