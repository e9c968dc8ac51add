"""SQLite units of work on the event loop's own thread, through the synchronous driver.

aiosqlite hands every step of a statement (cursor, execute, fetch, close) and of a transaction
(BEGIN, COMMIT, the pool's reset) to its connection's thread and back: on GetUser and on a
money move those hops cost more than the work (profiled: a reserve was 2 ms in one process,
about 15 hops; the same statements inline take a quarter of a millisecond, most of it the
commit's fsync). So short units of work (`one_statement`: a key or a short page, a money move
of a handful of keyed rows) run inline, when they need not wait:

- a read: WAL readers wait on nobody but a WAL recovery, so a short busy timeout, then the unit
  of work's retry;
- a write: in turn with this process's other short writes (an asyncio lock, so waiting costs
  the loop nothing), then only when the write lock is free now (busy timeout 0: another
  process, or a longer unit of work here, may hold it); otherwise it takes the driver's thread
  as any unit of work does, and waits there. Its block runs without yielding to the loop; its
  commit's fsync runs on a thread (services.core.db).

Hand-written: SQLAlchemy's asyncio facade refuses a driver that never awaits.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import Connection, CursorResult, Engine, Executable, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.core.settings import ServiceName

# A lone read inline blocks the loop while it waits: a WAL reader waits on nobody but a WAL
# recovery, so a short wait, then the unit of work's retry.
READ_BUSY_TIMEOUT_MS = 50
# Reads and writes use one connection at a time each (an inline block never yields, writes
# take turns); a few for a read that runs while a write commits.
POOL_SIZE = 4


class InlineConnection(AsyncConnection):
    """The asyncio facade over a synchronous connection: a repository's awaited statement runs
    the driver inline, without a thread. Repositories use `execute` alone (and `dialect`,
    proxied already)."""

    async def execute(
        self,
        statement: Executable,
        parameters: Any = None,
        *,
        execution_options: Any = None,
    ) -> CursorResult[Any]:
        assert self.sync_connection is not None, "built on an open connection"
        return self.sync_connection.execute(
            statement, parameters, execution_options=execution_options
        )


class LoopThreadEngines:
    """The synchronous engines of one SQLite file: reads (query_only) and writes."""

    def __init__(self, url: URL, service: ServiceName) -> None:
        self.reads = _engine(url, service, read_only=True)
        self.writes = _engine(url, service, read_only=False)
        self.write_turn = asyncio.Lock()

    def read(self) -> Connection | None:
        """A connection for a lone read, or None when none is free now."""
        try:
            return self.reads.connect()
        except PoolTimeoutError:
            return None

    def write(self) -> Connection | None:
        """A connection holding the write lock (BEGIN IMMEDIATE done), or None when that would
        mean waiting: for a free connection, or for the lock."""
        try:
            connection = self.writes.connect()
        except PoolTimeoutError:
            return None
        try:
            connection.begin()
        except OperationalError:  # busy: another connection holds the write lock
            connection.close()
            return None
        return connection

    def dispose(self) -> None:
        self.reads.dispose()
        self.writes.dispose()


def loop_thread_engines(url: URL, service: ServiceName) -> LoopThreadEngines | None:
    """None for a database that lives in memory (another connection would see another)."""
    if url.database in (None, "", ":memory:"):
        return None
    return LoopThreadEngines(url, service)


def _engine(url: URL, service: ServiceName, *, read_only: bool) -> Engine:
    engine = create_engine(
        url.set(drivername="sqlite+pysqlite"),
        hide_parameters=True,
        execution_options={"schema_translate_map": {service: None}},
        pool_size=POOL_SIZE,
        max_overflow=0,
        # Never wait for a connection on the loop's thread: take the driver's thread instead.
        pool_timeout=0,
        # Used on the loop's thread only, but the pool may be disposed from another.
        connect_args={"check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, or none
        cursor = dbapi_connection.cursor()
        if read_only:
            cursor.execute(f"PRAGMA busy_timeout={READ_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA query_only=ON")  # a stray write fails loudly
        else:
            cursor.execute("PRAGMA busy_timeout=0")
            cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    if not read_only:

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
