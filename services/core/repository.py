"""BaseRepository: the common queries every service's repository is built from.

A repository lives for one unit of work (`Database.transaction()`): it gets that transaction's
connection, speaks SQLAlchemy Core over one table, and hands back domain dataclasses, never rows.
Every statement is built by SQLAlchemy, so every value is a bound parameter.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy import (
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
    update,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.core.db import translate_error

ModelT = TypeVar("ModelT")

logger = logging.getLogger(__name__)


class BaseRepository(ABC, Generic[ModelT]):
    table: ClassVar[Table]

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    @abstractmethod
    def to_domain(self, row: Row[Any]) -> ModelT:
        """Turn one row of `table` into the service's domain dataclass."""

    async def execute(self, statement: Executable) -> Result[Any]:
        """Run a statement, with driver errors translated (a unique violation: ALREADY_EXISTS)."""
        try:
            return await self._connection.execute(statement)
        except SQLAlchemyError as exc:
            translated = translate_error(exc)
            if translated is None:
                raise
            logger.debug("%s on %s: %s", translated.reason, self.table.name, type(exc).__name__)
            raise translated from exc

    async def insert(self, values: Mapping[str, Any]) -> ModelT:
        result = await self.execute(insert(self.table).values(dict(values)).returning(self.table))
        return self.to_domain(result.one())

    async def find(self, **equal_to: Any) -> ModelT | None:
        result = await self.execute(select(self.table).where(self._matching(equal_to)))
        row = result.one_or_none()
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
        statement = update(self.table).where(self._matching(equal_to)).values(dict(values))
        return _rowcount(await self.execute(statement))

    async def delete_where(self, **equal_to: Any) -> int:
        statement = delete(self.table).where(self._matching(equal_to))
        return _rowcount(await self.execute(statement))

    def _matching(self, equal_to: Mapping[str, Any]) -> ColumnElement[bool]:
        if not equal_to:
            # An empty filter would touch every row: never what a caller of update/delete meant.
            raise ValueError("a condition is required")
        return and_(*(self.table.c[name] == value for name, value in equal_to.items()))


def _rowcount(result: Result[Any]) -> int:
    # UPDATE and DELETE always produce a CursorResult, the one Result that counts rows.
    assert isinstance(result, CursorResult)
    return int(result.rowcount)
