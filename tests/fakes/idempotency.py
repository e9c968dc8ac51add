"""The kernel's idempotency repository with its table in memory."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BinaryExpression, BindParameter, ColumnElement, Executable, Insert
from sqlalchemy.sql import operators

from services.core.errors import AlreadyExists
from services.core.idempotency import IdempotencyRepository, StoredKey

Keys = dict[tuple[str, str], StoredKey]


class KeysInMemory(IdempotencyRepository):
    """`claim`, `record`, `remembered_many` and their rules (replay, IDEMPOTENCY_KEY_REUSED, nothing
    kept by a failed call) are the kernel's own; only the statements they run are answered from
    `keys`, by (scope, key) as the table's primary key."""

    def __init__(self, keys: Keys) -> None:
        self._keys = keys

    async def insert_or_ignore(self, values: Mapping[str, Any]) -> StoredKey | None:
        primary_key = (values["scope"], values["key"])
        if primary_key in self._keys:
            return None
        stored = StoredKey(
            values["scope"],
            values["key"],
            values["fingerprint"],
            values.get("response"),
            values["create_time"],
        )
        self._keys[primary_key] = stored
        return stored

    async def find(self, *, for_update: bool = False, **equal_to: Any) -> StoredKey | None:
        return self._keys.get((equal_to["scope"], equal_to["key"]))

    async def find_many(
        self,
        *conditions: ColumnElement[bool],
        order_by: Sequence[ColumnElement[Any]] = (),
        limit: int | None = None,
    ) -> list[StoredKey]:
        if order_by or limit is not None:
            raise NotImplementedError("the fake reads keys in no order and without a limit")
        return [k for k in self._keys.values() if all(_meets(k, c) for c in conditions)]

    async def execute_many(self, statement: Executable, rows: Sequence[Mapping[str, Any]]) -> None:
        if not isinstance(statement, Insert):
            raise NotImplementedError(f"the fake runs INSERTs of keys only, not {statement}")
        for row in rows:
            if await self.insert_or_ignore(row) is None:
                raise AlreadyExists("the record already exists")

    async def update_where(self, equal_to: Mapping[str, Any], values: Mapping[str, Any]) -> int:
        primary_key = (equal_to["scope"], equal_to["key"])
        stored = self._keys.get(primary_key)
        if stored is None:
            return 0
        self._keys[primary_key] = replace(stored, **values)
        return 1

    async def sweep(self, now: datetime, retention: timedelta) -> int:
        old = [key for key, stored in self._keys.items() if stored.create_time < now - retention]
        for key in old:
            del self._keys[key]
        return len(old)


def _meets(stored: StoredKey, condition: ColumnElement[bool]) -> bool:
    """`column == value` and `column IN values`: the conditions the kernel's queries of keys
    put to `find_many`; any other fails the test that meets it."""
    if isinstance(condition, BinaryExpression) and isinstance(condition.right, BindParameter):
        value = getattr(stored, condition.left.key or "")
        if condition.operator is operators.eq:
            return bool(value == condition.right.value)
        if condition.operator is operators.in_op:
            return value in (condition.right.value or ())
    raise NotImplementedError(f"the fake evaluates no condition {condition}")
