"""The unit of work: one transaction, the service's repositories on it, commit or roll back.

Use cases (services/<name>/usecases.py) run each operation as one block of `UnitOfWork.attempts`
(a one-call operation through `UnitOfWork.run`), so the check, the write, the ledger entry and
the idempotency record of one call commit together or not at all. A unit of work that the
database refuses because of a concurrent one (serialization failure 40001, deadlock 40P01,
SQLite busy), at BEGIN or at a statement, is retried from the start a bounded number of times
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
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from types import TracebackType
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
        self.attempt_count = attempts
        self.service = database.service
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

    def attempts(
        self, *, read_only: bool = False, one_statement: bool = False
    ) -> Attempts[RepositoriesT]:
        """The tries of one unit of work, each a transaction to run the block in:

            async for attempt in uow.attempts():
                async with attempt as r:
                    ...

        An attempt commits when its block ends; one the database refused for a conflict, or
        whose connection was lost, is rolled back and the loop runs the block again after a
        jittered backoff; after the last attempt the error reaches the caller. The block must be
        safe to run again: it may read and write only through the repositories it is given (a
        retried transaction has left no trace), never call other services. `one_statement`: the
        block sends one statement on PostgreSQL, which then runs without BEGIN and COMMIT (see
        `Database.transaction`)."""
        return Attempts(self, read_only=read_only, one_statement=one_statement)

    async def run(
        self,
        work: Callable[[RepositoriesT], Awaitable[ResultT]],
        *,
        read_only: bool = False,
        one_statement: bool = False,
    ) -> ResultT:
        """`attempts` for a block that is one call: `await uow.run(lambda r: r.users.get(id))`."""
        async for attempt in self.attempts(read_only=read_only, one_statement=one_statement):
            async with attempt as repositories:
                return await work(repositories)
        raise AssertionError("unreachable: an attempt returns, or the last one raises")


class Attempts(Generic[RepositoriesT]):
    """See `UnitOfWork.attempts`. A class rather than an async generator: a block that raises
    leaves the loop at once, and no half-run generator is left for the event loop to close.

    The transaction of an attempt is opened here, so that a refused BEGIN (SQLite's write lock
    held too long, a connection found closed) is retried as a conflict in the block is."""

    def __init__(
        self, uow: UnitOfWork[RepositoriesT], *, read_only: bool, one_statement: bool
    ) -> None:
        self._uow = uow
        self._read_only = read_only
        self._one_statement = one_statement
        self._failed = 0
        self._current: Attempt[RepositoriesT] | None = None

    def __aiter__(self) -> Attempts[RepositoriesT]:
        return self

    async def __anext__(self) -> Attempt[RepositoriesT]:
        current = self._current
        if current is not None:
            if not current.ended:
                raise RuntimeError("each attempt of a unit of work must be entered (async with)")
            if not current.retry:
                raise StopAsyncIteration
            self._failed += 1
        while True:
            if self._failed:
                UNIT_OF_WORK_RETRIES.labels(self._uow.service).inc()
                # Full jitter: concurrent losers spread out instead of colliding again in step.
                await asyncio.sleep(random.uniform(0, FIRST_BACKOFF_SECONDS * 2**self._failed))  # noqa: S311
            number = self._failed + 1
            last = number == self._uow.attempt_count
            transaction = self._uow.begin(
                read_only=self._read_only, one_statement=self._one_statement
            )
            try:
                repositories = await transaction.__aenter__()
            except (TransactionConflict, ConnectionLost):
                if last:
                    logger.warning("unit of work aborted", extra={"attempts": number})
                    raise
                self._failed += 1
                continue
            self._current = Attempt(transaction, repositories, number, last=last)
            return self._current


class Attempt(Generic[RepositoriesT]):
    """One transaction of a unit of work: `async with attempt as repositories`. A conflict or a
    lost connection met by the block ends it without an error unless it is the last attempt.

    One met by the COMMIT itself is raised (ABORTED, UNAVAILABLE), never retried: a block may
    `return` from inside, and its result must not leave a transaction that did not commit. On
    PostgreSQL (READ COMMITTED) and SQLite (BEGIN IMMEDIATE) conflicts arise at statements and
    at BEGIN, which are retried."""

    def __init__(
        self,
        transaction: AbstractAsyncContextManager[RepositoriesT],
        repositories: RepositoriesT,
        number: int,
        *,
        last: bool,
    ) -> None:
        self._transaction = transaction
        self._repositories = repositories
        self._number = number
        self._last = last
        self.ended = False
        self.retry = False

    async def __aenter__(self) -> RepositoriesT:
        return self._repositories

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        self.ended = True
        # Commits, or rolls back and raises again what the block raised.
        await self._transaction.__aexit__(exc_type, exc, traceback)
        if not isinstance(exc, TransactionConflict | ConnectionLost):
            return False
        if self._last:
            logger.warning("unit of work aborted", extra={"attempts": self._number})
            return False
        self.retry = True
        return True  # swallowed: the loop of `Attempts` runs the block again
