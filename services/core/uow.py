"""The unit of work: one transaction, the service's repositories on it, commit or roll back.

Use cases (services/<name>/usecases.py) run their operations as blocks in `UnitOfWork.attempts`
(or, for one call, through `UnitOfWork.run`), so the
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
        raise AssertionError("unreachable: the last attempt returns or raises")


class Attempts(Generic[RepositoriesT]):
    """See `UnitOfWork.attempts`. A class rather than an async generator: a block that raises
    leaves the loop at once, and no half-run generator is left for the event loop to close."""

    def __init__(
        self, uow: UnitOfWork[RepositoriesT], *, read_only: bool, one_statement: bool
    ) -> None:
        self._uow = uow
        self._read_only = read_only
        self._one_statement = one_statement
        self._current: Attempt[RepositoriesT] | None = None

    def __aiter__(self) -> Attempts[RepositoriesT]:
        return self

    async def __anext__(self) -> Attempt[RepositoriesT]:
        current = self._current
        if current is None:
            number = 1
        elif current.committed:
            raise StopAsyncIteration
        elif not current.retry:
            raise RuntimeError("each attempt of a unit of work must be entered (async with)")
        else:
            number = current.number + 1
            UNIT_OF_WORK_RETRIES.labels(self._uow._database.service).inc()
            # Full jitter: concurrent losers spread out instead of colliding again in step.
            await asyncio.sleep(random.uniform(0, FIRST_BACKOFF_SECONDS * 2**current.number))  # noqa: S311
        self._current = Attempt(
            self._uow.begin(read_only=self._read_only, one_statement=self._one_statement),
            number,
            last=number == self._uow._attempts,
        )
        return self._current


class Attempt(Generic[RepositoriesT]):
    """One transaction of a unit of work: `async with attempt as repositories`. A conflict or a
    lost connection (from the block or its commit) ends it without an error unless it is the
    last attempt."""

    def __init__(
        self,
        transaction: AbstractAsyncContextManager[RepositoriesT],
        number: int,
        *,
        last: bool,
    ) -> None:
        self._transaction = transaction
        self.number = number
        self._last = last
        self.committed = False
        self.retry = False

    async def __aenter__(self) -> RepositoriesT:
        return await self._transaction.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        try:
            await self._transaction.__aexit__(exc_type, exc, traceback)
        except (TransactionConflict, ConnectionLost):  # at commit or rollback
            if not self._again():
                raise
            return True
        if exc is None:
            self.committed = True
            return False
        # True swallows the error, so that the loop of `Attempts` runs the block again.
        return isinstance(exc, TransactionConflict | ConnectionLost) and self._again()

    def _again(self) -> bool:
        """Whether another attempt follows the one that just failed."""
        if self._last:
            logger.warning("unit of work aborted", extra={"attempts": self.number})
            return False
        self.retry = True
        return True
