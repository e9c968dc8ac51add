"""BaseRepository: the common queries every service's repository is built from.

A repository lives for one unit of work (services.core.uow): it gets that transaction's
connection, speaks SQLAlchemy Core over one table, and hands back domain dataclasses, never rows.
Every statement is built by SQLAlchemy, so every value is a bound parameter.

Writes that must decide atomically (hold credits only if enough are available) are one
conditional UPDATE ... WHERE <condition> RETURNING: the database checks and writes in one step,
so no concurrent writer can slip between a read and the write. Column names given as strings
are checked against the table, so a typo fails the first test that runs it.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy import (
    Column,
    ColumnElement,
    CursorResult,
    Executable,
    Result,
    Row,
    Table,
    and_,
    delete,
    func,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.core.db import translate_error
from services.core.pagination import Cursor, Page

ModelT = TypeVar("ModelT")

logger = logging.getLogger(__name__)


class BaseRepository(ABC, Generic[ModelT]):
    table: ClassVar[Table]

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    @abstractmethod
    def to_domain(self, row: Row[Any]) -> ModelT:
        """Turn one row of `table` into the service's domain dataclass."""

    @property
    def is_postgresql(self) -> bool:
        return self._connection.dialect.name == "postgresql"

    def dialect_insert(self) -> postgresql.Insert | sqlite.Insert:
        """An INSERT into `table` in the engine's own dialect, which takes ON CONFLICT."""
        return postgresql.insert(self.table) if self.is_postgresql else sqlite.insert(self.table)

    async def execute_many(self, statement: Executable, rows: Sequence[Mapping[str, Any]]) -> None:
        """One statement for many rows (executemany): compiled once and sent as one batch, where
        a multi-row VALUES would be compiled anew for every batch size."""
        await self.execute(statement, [dict(self._checked(row)) for row in rows])

    async def execute(
        self, statement: Executable, parameters: Sequence[Mapping[str, Any]] | None = None
    ) -> Result[Any]:
        """Run a statement, with driver errors translated (a unique violation: ALREADY_EXISTS)."""
        try:
            return await self._connection.execute(statement, parameters)
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            translated = translate_error(exc)
            if translated is None:
                raise
            logger.debug("%s on %s: %s", translated.reason, self.table.name, type(exc).__name__)
            raise translated from exc

    async def insert(self, values: Mapping[str, Any]) -> ModelT:
        statement = insert(self.table).values(dict(self._checked(values))).returning(self.table)
        result = await self.execute(statement)
        return self.to_domain(result.one())

    async def insert_or_ignore(self, values: Mapping[str, Any]) -> ModelT | None:
        """Insert unless a row with the same unique key exists; None when it did (nothing was
        written). On PostgreSQL a concurrent insert of the same key waits for the other
        transaction to end, so exactly one of them gets the row."""
        statement = (
            self.dialect_insert()
            .values(dict(self._checked(values)))
            .on_conflict_do_nothing()
            .returning(self.table)
        )
        row = (await self.execute(statement)).one_or_none()
        return None if row is None else self.to_domain(row)

    async def find(self, *, for_update: bool = False, **equal_to: Any) -> ModelT | None:
        """The matching row. `for_update` locks it until the unit of work ends (FOR UPDATE on
        PostgreSQL; on SQLite every unit of work that may write already holds the write lock)."""
        statement = select(self.table).where(self._matching(equal_to))
        if for_update:
            statement = statement.with_for_update()
        row = (await self.execute(statement)).one_or_none()
        return None if row is None else self.to_domain(row)

    async def find_many(
        self,
        *conditions: ColumnElement[bool],
        order_by: Sequence[ColumnElement[Any]] = (),
        limit: int | None = None,
    ) -> list[ModelT]:
        statement = select(self.table).where(*conditions).order_by(*order_by).limit(limit)
        return [self.to_domain(row) for row in await self.execute(statement)]

    async def count(self, *conditions: ColumnElement[bool]) -> int:
        statement = select(func.count()).select_from(self.table).where(*conditions)
        return int((await self.execute(statement)).scalar_one())

    async def update_where(self, equal_to: Mapping[str, Any], values: Mapping[str, Any]) -> int:
        """Update the matching rows; returns how many matched (0: nothing changed)."""
        statement = (
            update(self.table).where(self._matching(equal_to)).values(dict(self._checked(values)))
        )
        return _rowcount(await self.execute(statement))

    async def update_returning(
        self, *conditions: ColumnElement[bool], values: Mapping[str, Any]
    ) -> list[ModelT]:
        """One conditional write: set `values` (plain values or expressions of the row's own
        columns, `self.table.c.reserved + 5`) on every row meeting all `conditions`, and return
        those rows as they are after the write. An empty list: no row met the conditions, and
        nothing changed."""
        if not conditions:
            raise ValueError("a condition is required")
        statement = (
            update(self.table)
            .where(*conditions)
            .values(dict(self._checked(values)))
            .returning(self.table)
        )
        return [self.to_domain(row) for row in await self.execute(statement)]

    async def page(
        self,
        *conditions: ColumnElement[bool],
        key: Sequence[Column[Any]],
        size: int,
        after: Cursor | None,
        descending: bool = True,
    ) -> Page[ModelT]:
        """One page of keyset pagination ordered by `key` (whose last column must be unique):
        the rows after the cursor of the previous page. Rows inserted between pages are neither
        skipped nor repeated: the next page starts after a key, not at an offset."""
        statement = select(self.table).where(*conditions)
        if after is not None:
            if len(after) != len(key):
                raise ValueError("the cursor does not fit this key")
            position = tuple_(*key)
            bound = tuple_(*after)
            statement = statement.where(position < bound if descending else position > bound)
        order = [column.desc() if descending else column.asc() for column in key]
        rows = list(await self.execute(statement.order_by(*order).limit(size + 1)))
        more = len(rows) > size
        rows = rows[:size]
        last = tuple(getattr(rows[-1], column.name) for column in key) if more else None
        return Page([self.to_domain(row) for row in rows], last)

    async def delete_where(self, **equal_to: Any) -> int:
        statement = delete(self.table).where(self._matching(equal_to))
        return _rowcount(await self.execute(statement))

    async def delete_matching(self, *conditions: ColumnElement[bool]) -> int:
        """Delete every row meeting all `conditions` (at least one); returns how many."""
        if not conditions:
            raise ValueError("a condition is required")
        return _rowcount(await self.execute(delete(self.table).where(*conditions)))

    def _matching(self, equal_to: Mapping[str, Any]) -> ColumnElement[bool]:
        if not equal_to:
            # An empty filter would touch every row: never what a caller of update/delete meant.
            raise ValueError("a condition is required")
        checked = self._checked(equal_to)
        return and_(*(self.table.c[name] == value for name, value in checked.items()))

    def _checked(self, values: Mapping[str, Any]) -> Mapping[str, Any]:
        unknown = sorted(set(values) - set(self.table.c.keys()))
        if unknown:
            raise UnknownColumn(self.table.name, unknown)
        return values


class UnknownColumn(KeyError):
    """A column name that the table does not have: a bug in the repository, caught by its tests."""

    def __init__(self, table: str, names: Sequence[str]) -> None:
        super().__init__(f"table {table} has no column {', '.join(names)}")


def _rowcount(result: Result[Any]) -> int:
    # UPDATE and DELETE always produce a CursorResult, the one Result that counts rows.
    assert isinstance(result, CursorResult)
    return int(result.rowcount)
