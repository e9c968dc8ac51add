"""Idempotency keys: a repeat of a mutating call returns the first result and changes nothing.

Each service keeps its keys in its own schema (`idempotency_columns()` is the table shape its
migration creates) and remembers them inside the caller's unit of work, so the effect and the
record of it commit together or not at all:

- same scope (the RPC), same key, same parameters: the stored result, no second effect;
- same key, other parameters: FAILED_PRECONDITION, reason IDEMPOTENCY_KEY_REUSED;
- a repeat that arrives while the first call is still running waits for it (the database
  holds the first call's claim locked until it commits: PostgreSQL's row lock, SQLite's write
  lock), then replays its result; if the first call failed, nothing was remembered and the
  repeat runs as a first call;
- keys are kept `idempotency_retention_days` (at least the 7 days the protos promise), then
  swept by the service's background task.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Column, Index, MetaData, Row, String, Table, Text, insert

from services.core.background import PeriodicJob
from services.core.clock import Clock
from services.core.db import UtcDateTime
from services.core.errors import (
    AlreadyExists,
    ErrorDetails,
    FailedPrecondition,
    TransactionConflict,
)
from services.core.repository import BaseRepository
from services.core.uow import UnitOfWork

RepositoriesT = TypeVar("RepositoriesT")

TABLE_NAME = "idempotency_keys"
SWEEP_INTERVAL_SECONDS = 3600.0


def idempotency_columns() -> list[Column[Any]]:
    """The table shape, fresh Column objects for a Table or a migration's create_table.

    A migration that created this table keeps its shape: change it only with a new migration.
    """
    return [
        Column("scope", String(96), primary_key=True),
        Column("key", String(128), primary_key=True),
        Column("fingerprint", String(64), nullable=False),
        # The result as the use case encoded it; NULL only inside the claiming transaction.
        Column("response", Text, nullable=True),
        Column("create_time", UtcDateTime, nullable=False),
    ]


def idempotency_table(metadata: MetaData) -> Table:
    table = Table(TABLE_NAME, metadata, *idempotency_columns())
    Index(f"ix_{TABLE_NAME}_create_time", table.c.create_time)
    return table


@dataclass(frozen=True)
class StoredKey:
    scope: str
    key: str
    fingerprint: str
    response: str | None
    create_time: datetime


class IdempotencyKeyReused(FailedPrecondition):
    reason = "IDEMPOTENCY_KEY_REUSED"

    def __init__(self, scope: str, key: str, index: int | None = None) -> None:
        """`index`: the entry of a batch request (`requests[index]`) that reused the key."""
        where = "" if index is None else f"requests[{index}]: "
        metadata = {"idempotency_key": key}
        if index is not None:
            metadata["index"] = str(index)
        super().__init__(
            f"{where}idempotency key {key!r} was used for {scope} with other parameters; "
            "use a new key for a new request",
            details=ErrorDetails(metadata=metadata),
        )


@dataclass(frozen=True)
class KeyClaim:
    """One key of a batch to claim, with what its call asked (digested) and answers."""

    key: str
    fingerprint: str
    response: str


def fingerprint_of(scope: str, parameters: Mapping[str, object]) -> str:
    """A digest of what was asked: the same parameters in any order give the same digest."""
    canonical = json.dumps(
        {"scope": scope, "parameters": parameters}, sort_keys=True, default=str
    ).encode()
    return hashlib.sha256(canonical).hexdigest()


class IdempotencyRepository(BaseRepository[StoredKey]):
    """Subclass it with the service's own table: `table = tables.idempotency_keys`."""

    def to_domain(self, row: Row[Any]) -> StoredKey:
        return StoredKey(row.scope, row.key, row.fingerprint, row.response, row.create_time)

    async def claim(
        self, scope: str, key: str, parameters: Mapping[str, object], now: datetime
    ) -> str | None:
        """Claim (scope, key) in this unit of work: None when this call is the first, whose
        effect the caller then makes in this same unit and ends with `record`; otherwise what
        the first call recorded, to replay (it may read the current state, such as a
        reservation's). A repeat waits here for a first call still running; a key used with
        other parameters raises IdempotencyKeyReused; a failed first call rolls its claim back
        with its effect, so nothing of it is remembered.

            replay = await r.idempotency.claim(SCOPE, key, parameters, now)
            if replay is not None:
                return decoded(replay)
            result = ...  # the effect
            await r.idempotency.record(SCOPE, key, encoded(result))
        """
        fingerprint = fingerprint_of(scope, parameters)
        claim = {"scope": scope, "key": key, "fingerprint": fingerprint, "create_time": now}
        if await self.insert_or_ignore(claim) is not None:
            return None
        stored = await self.find(scope=scope, key=key)
        if stored is None or stored.response is None:
            # Swept or rolled back between our insert and our read: try the unit again.
            raise TransactionConflict("a concurrent repeat of this call; retry it")
        if stored.fingerprint != fingerprint:
            raise IdempotencyKeyReused(scope, key)
        return stored.response

    async def record(self, scope: str, key: str, response: str) -> None:
        """What the first call of a key answers, stored with the key `claim` took for it."""
        await self.update_where({"scope": scope, "key": key}, {"response": response})

    async def remembered_many(
        self, scope: str, claims: Sequence[KeyClaim], now: datetime, *, batch: bool
    ) -> list[str | None]:
        """The batch form of `claim` and `record`, for calls whose results are known before any
        effect: claims every new key with its response in this unit of work and answers, per
        claim, None (claimed now: its effect is the caller's to make in this same unit) or the
        response stored by the first call. A key used with other parameters raises
        IdempotencyKeyReused, naming the entry when `batch`.

        Two statements for the whole batch, where `claim` and `record` cost two per key. A
        concurrent first claim of one of the keys makes the INSERT wait for it (PostgreSQL's
        unique index; SQLite's write lock serializes whole units) and then fail: the unit is
        retried, and the retry finds the key taken and replays it."""
        c = self.table.c
        keys = [claim.key for claim in claims]
        earlier = {
            stored.key: stored for stored in await self.find_many(c.scope == scope, c.key.in_(keys))
        }
        answers: list[str | None] = []
        for index, claim in enumerate(claims):
            stored = earlier.get(claim.key)
            if stored is None:
                answers.append(None)
            elif stored.response is None:
                raise TransactionConflict("a concurrent repeat of this call; retry it")
            elif stored.fingerprint != claim.fingerprint:
                raise IdempotencyKeyReused(scope, claim.key, index if batch else None)
            else:
                answers.append(stored.response)
        rows = [
            {
                "scope": scope,
                "key": claim.key,
                "fingerprint": claim.fingerprint,
                "response": claim.response,
                "create_time": now,
            }
            # In key order: two batches sharing keys wait on each other in one order, never in
            # a cycle (a deadlock PostgreSQL would break by failing one of them).
            for claim in sorted(claims, key=lambda claim: claim.key)
            if claim.key not in earlier
        ]
        if rows:
            try:
                await self.execute_many(insert(self.table), rows)
            except AlreadyExists as exc:
                raise TransactionConflict("a concurrent call claimed the same key") from exc
        return answers

    async def sweep(self, now: datetime, retention: timedelta) -> int:
        """Forget keys older than the retention; returns how many."""
        return await self.delete_matching(self.table.c.create_time < now - retention)


def sweeper_job(
    uow: UnitOfWork[RepositoriesT],
    store: Callable[[RepositoriesT], IdempotencyRepository],
    clock: Clock,
    retention: timedelta,
    interval_seconds: float = SWEEP_INTERVAL_SECONDS,
) -> PeriodicJob:
    """The background job that forgets expired keys; `store` picks the service's repository
    out of its bundle (`lambda repositories: repositories.idempotency`)."""

    async def sweep() -> int:
        return await uow.run(lambda repositories: store(repositories).sweep(clock(), retention))

    return PeriodicJob("idempotency-sweeper", interval_seconds, sweep)
