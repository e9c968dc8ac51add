"""The kernel's idempotency repository with its table in memory."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from services.core.idempotency import IdempotencyRepository, StoredKey

Keys = dict[tuple[str, str], StoredKey]


class KeysInMemory(IdempotencyRepository):
    """`remembered` and its rules (replay, IDEMPOTENCY_KEY_REUSED, nothing kept by a failed
    call) are the kernel's own; only the statements it runs are answered from `keys`, by
    (scope, key) as the table's primary key."""

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
