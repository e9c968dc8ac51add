"""The unit of work: one transaction, the service's repositories on it, commit or roll back.

Use cases (services/<name>/usecases.py) run their operations through `UnitOfWork.run`, so the
check, the write, the ledger entry and the idempotency record of one call commit together or not
at all. A unit of work that the database refuses because of a concurrent one (serialization
failure 40001, deadlock 40P01, SQLite busy) is retried from the start a bounded number of times
with jittered backoff; after the last try the caller gets ABORTED (retryable). So is one that
found its pooled connection closed before it committed (the database restarted): it runs again
on a fresh connection, and only a database still down reaches the caller, as UNAVAILABLE.

Each transaction is a span ("unit of work", services.core.tracing) when tracing is on, child of
the RPC's: a retried unit shows as one span per attempt, the conflict recorded on each.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from services.core import tracing
from services.core.db import ConnectionLost, Database
from services.core.errors import TransactionConflict
from services.core.metrics import UNIT_OF_WORK_RETRIES

RepositoriesT = TypeVar("RepositoriesT")
ResultT = TypeVar("ResultT")

logger = logging.getLogger(__name__)

FIRST_BACKOFF_SECONDS = 0.005


class UnitOfWork(Generic[RepositoriesT]):
    """`repositories` builds the service's bundle of repositories on one connection."""

    def __init__(
        self,
        database: Database,
        repositories: Callable[[AsyncConnection], RepositoriesT],
        *,
        attempts: int = 4,
    ) -> None:
        if attempts < 1:
            raise ValueError("a unit of work needs at least one attempt")
        self._database = database
        self._repositories = repositories
        self._attempts = attempts
        engine = database.engine
        # The service's schema, or on SQLite its file (one per service).
        namespace = database.schema or Path(engine.url.database or "").stem
        self._span_attributes = {
            read_only: {
                "db.system.name": engine.dialect.name,
                "db.namespace": namespace,
                "r3mes.read_only": read_only,
            }
            for read_only in (False, True)
        }

    @asynccontextmanager
    async def begin(
        self, *, read_only: bool = False, one_statement: bool = False
    ) -> AsyncIterator[RepositoriesT]:
        """One transaction, not retried: commits when the block ends, rolls back if it raises.
        `one_statement`: see `Database.transaction`."""
        with tracing.internal_span("unit of work", self._span_attributes[read_only]):
            async with self._database.transaction(
                read_only=read_only, one_statement=one_statement
            ) as connection:
                yield self._repositories(connection)

    async def run(
        self,
        work: Callable[[RepositoriesT], Awaitable[ResultT]],
        *,
        read_only: bool = False,
        one_statement: bool = False,
    ) -> ResultT:
        """Run `work` in one transaction, again from the start after a conflict.

        `work` must be safe to run again: it may read and write only through the repositories it
        is given (a retried transaction has left no trace), never call other services.
        `one_statement`: `work` sends one statement on PostgreSQL, which then runs without BEGIN
        and COMMIT (see `Database.transaction`).
        """
        for attempt in range(1, self._attempts + 1):
            try:
                async with self.begin(
                    read_only=read_only, one_statement=one_statement
                ) as repositories:
                    return await work(repositories)
            except (TransactionConflict, ConnectionLost):
                if attempt == self._attempts:
                    logger.warning("unit of work aborted", extra={"attempts": attempt})
                    raise
                UNIT_OF_WORK_RETRIES.labels(self._database.service).inc()
            # Full jitter: concurrent losers spread out instead of colliding again in step.
            await asyncio.sleep(random.uniform(0, FIRST_BACKOFF_SECONDS * 2**attempt))  # noqa: S311
        raise AssertionError("unreachable: the last attempt returns or raises")
