"""Engines and transactions for one service's schema, on SQLite (embedded) or PostgreSQL.

Every transaction takes its own pooled connection, so concurrent coroutines never share one (the
old monolith's reservation race). Driver errors leave this module as the error hierarchy: a unique
violation becomes ALREADY_EXISTS, a lost or refused connection UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, DateTime, Dialect, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncTransaction,
    create_async_engine,
)
from sqlalchemy.pool import QueuePool
from sqlalchemy.types import TypeDecorator

from services.core.db_inline import InlineConnection, LoopThreadEngines, loop_thread_engines
from services.core.errors import AlreadyExists, R3mesError, TransactionConflict, Unavailable
from services.core.metrics import DB_POOL_IN_USE, DB_POOL_TIMEOUTS, DB_POOL_WAITING
from services.core.settings import ServiceName, Settings

logger = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 5000
# Connections per service on SQLite: enough that the calls one process runs at once rarely wait
# (each costs a driver thread and a file handle, nothing while idle).
SQLITE_POOL_SIZE = 20
READ_ONLY = "r3mes_read_only"  # an execution option of ours, read by the SQLite begin hook
UNIQUE_VIOLATION_SQLSTATE = "23505"
# Serialization failures and deadlocks: the whole transaction may be retried.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
# SQLite's busy answers: another writer held the lock past the busy timeout; retry the unit.
SQLITE_BUSY_SIGNS = ("database is locked", "database table is locked")
SQLITE_UNAVAILABLE_SIGNS = ("unable to open", "disk I/O error")
# A statement PostgreSQL cancelled (statement_timeout): the database is too slow right now.
QUERY_CANCELED_SQLSTATE = "57014"
# PostgreSQL cannot serve right now, whatever the statement: a connection failure (class 08),
# too many connections or other resources short (53), or a server shutting down, crashed or
# still starting up (57P01-57P05: what every restart answers for a few moments).
UNAVAILABLE_SQLSTATE_PREFIXES = ("08", "53", "57P")


class ConnectionLost(Unavailable):
    """A pooled connection turned out closed (the database restarted, or a proxy or firewall
    dropped it) before its transaction committed: nothing of the transaction was stored, so the
    unit of work may run again on a fresh connection."""


class Database:
    """The engine of one service and the name its schema has on this engine."""

    def __init__(
        self,
        engine: AsyncEngine,
        schema: str | None,
        service: ServiceName,
        loop_thread: LoopThreadEngines | None = None,
    ) -> None:
        self.engine = engine
        self.schema = schema
        self.service = service
        # SQLite only: the same file through the synchronous driver (services.core.db_inline).
        self._loop_thread = loop_thread
        self.waiting = 0  # units of work waiting for a pooled connection
        DB_POOL_IN_USE.track(self, _checked_out, service)
        DB_POOL_WAITING.track(self, lambda database: database.waiting, service)

    @classmethod
    def from_settings(cls, settings: Settings, service: ServiceName) -> Database:
        url = database_url(settings, service)
        if url.get_backend_name() == "sqlite":
            inline = loop_thread_engines(url, service)
            return cls(_sqlite_engine(url, service), None, service, inline)
        engine = create_async_engine(
            url,
            hide_parameters=True,  # error messages (and so logs) never carry the values
            pool_size=settings.db_pool_size,
            # No ping per checkout (on asyncpg it is BEGIN, a statement and ROLLBACK: three
            # round trips before every unit of work). A connection found dead instead fails its
            # first statement with ConnectionLost, the pool drops every connection as old as it,
            # and the unit of work runs again on a fresh one.
            pool_pre_ping=False,
            # A database that accepts connections but never answers must cost a call its
            # deadline at most, never hang it (or a starting service) for as long as it hangs.
            pool_timeout=settings.db_connect_timeout_seconds,
            connect_args={
                "timeout": settings.db_connect_timeout_seconds,
                "command_timeout": settings.db_statement_timeout_seconds,
                "server_settings": {
                    "statement_timeout": str(round(settings.db_statement_timeout_seconds * 1000))
                },
            },
            execution_options={"schema_translate_map": {service: service + settings.schema_suffix}},
        )
        return cls(engine, service + settings.schema_suffix, service)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @asynccontextmanager
    async def transaction(
        self, *, read_only: bool = False, one_statement: bool = False
    ) -> AsyncIterator[AsyncConnection]:
        """One unit of work: commits when the block ends, rolls back when it raises.

        `read_only` transactions take no write lock on SQLite, so reads never queue behind
        each other or behind writers (WAL lets them see the last committed state); on
        PostgreSQL they are READ ONLY transactions, so a stray write fails loudly.

        `one_statement`: on PostgreSQL the block sends a single statement, which is its own
        transaction (autocommit: no BEGIN and no COMMIT, one round trip instead of three; a
        write must then be one statement that is safe to run again, since a connection lost
        while it ran may have committed it). On SQLite the block is short (a key or a short
        page, never a scan of a whole table; a money move of a handful of keyed rows) and runs
        on the event loop's thread (services.core.db_inline): a read with no BEGIN, a write
        when the write lock is free now, else on the driver's thread, where it may wait.

        Failures of the database itself (connect, begin, commit, or a statement the block ran)
        leave as the error hierarchy; anything else the block raises passes through untouched,
        so an OSError of the caller's own is never reported as "database unavailable".
        """
        if one_statement and self._loop_thread is not None:
            # Writers take turns here, so a write waits for the one before it on the loop
            # rather than finding the lock taken and going to the driver's thread.
            turn = None if read_only else self._loop_thread.write_turn
            if turn is not None:
                await turn.acquire()
            try:
                with _translated():
                    inline = self._loop_thread.read() if read_only else self._loop_thread.write()
                if inline is not None:
                    on_loop = _on_loop_thread(self.engine, inline, writes=not read_only)
                    async with on_loop as connection:
                        yield connection
                    return
            finally:
                if turn is not None:
                    turn.release()
        self.waiting += 1
        try:
            with _translated():
                connection = await self.engine.connect()
        except Unavailable as error:
            if isinstance(error.__cause__, PoolTimeoutError):
                DB_POOL_TIMEOUTS.labels(self.service).inc()
            raise
        finally:
            self.waiting -= 1
        try:
            with _translated():
                options = self._options(read_only=read_only, one_statement=one_statement)
                if options:
                    await connection.execution_options(**options)
                transaction = await connection.begin()
            try:
                yield connection
            except SQLAlchemyError as exc:
                await _quietly_roll_back(transaction)
                raise _translated_or_same(exc) from exc
            except BaseException:
                await _quietly_roll_back(transaction)
                raise
            try:
                with _translated():
                    await transaction.commit()
            except ConnectionLost as lost:
                # Lost while committing: the database may have stored the transaction, so it
                # must not run again. The caller retries, its idempotency key keeping it safe.
                raise Unavailable("the database connection was lost; retry the call") from lost
        finally:
            with suppress(SQLAlchemyError, OSError, TimeoutError):
                await connection.close()

    def _options(self, *, read_only: bool, one_statement: bool) -> dict[str, Any]:
        if self.is_sqlite:
            return {READ_ONLY: True} if read_only else {}
        if one_statement:
            # The asyncpg adapter then sends neither BEGIN nor COMMIT, nor a ROLLBACK when the
            # pool takes the connection back.
            return {"isolation_level": "AUTOCOMMIT"}
        return {"postgresql_readonly": True} if read_only else {}

    async def ping(self) -> None:
        # Read-only: on SQLite a probe must not take the write lock.
        async with self.transaction(read_only=True) as connection:
            await connection.exec_driver_sql("SELECT 1")

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._loop_thread is not None:
            self._loop_thread.dispose()


def _checked_out(database: Database) -> float:
    pool = database.engine.pool
    return float(pool.checkedout()) if isinstance(pool, QueuePool) else 0.0


def database_url(settings: Settings, service: ServiceName) -> URL:
    if settings.database_url:
        return make_url(settings.database_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return make_url(f"sqlite+aiosqlite:///{settings.data_dir / service}.db")


def _sqlite_engine(url: URL, service: ServiceName) -> AsyncEngine:
    # SQLite has no schemas: each service has a file of its own, and table names drop the schema.
    engine = create_async_engine(
        url,
        hide_parameters=True,  # error messages (and so logs) never carry the values
        execution_options={"schema_translate_map": {service: None}},
        # Sized to the load, with no overflow: SQLAlchemy's default (5, plus 10 overflow
        # connections closed again on return) opened a connection, its driver thread and its
        # PRAGMAs for most calls under load; a queue for the next free connection is cheaper.
        pool_size=SQLITE_POOL_SIZE,
        max_overflow=0,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver's own implicit BEGIN is deferred, which lets two writers both read and then
        # deadlock on upgrade; we issue BEGIN ourselves (SQLAlchemy's documented recipe):
        # IMMEDIATE for a unit of work that may write, DEFERRED for a read-only one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # The busy timeout first: switching to WAL needs a lock another process may hold.
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")

    return engine


@asynccontextmanager
async def _on_loop_thread(
    engine: AsyncEngine, connection: Connection, *, writes: bool
) -> AsyncIterator[AsyncConnection]:
    """Run the block on `connection`; a write's is then committed (a read in autocommit has
    nothing to commit). The commit's fsync runs on a thread, so the loop goes on meanwhile
    (inline, it was 45 % of a busy process's time); shielded, so that a caller cancelled
    meanwhile never closes the connection under it: the commit's end closes it then."""
    handed_over = False
    try:
        yield InlineConnection(engine, connection)
        if writes and connection.in_transaction():
            committing = asyncio.ensure_future(asyncio.to_thread(connection.commit))
            try:
                await asyncio.shield(committing)
            except asyncio.CancelledError:
                committing.add_done_callback(lambda done: _close_after(done, connection))
                handed_over = True
                raise
    except SQLAlchemyError as exc:
        raise _translated_or_same(exc) from exc
    finally:
        if not handed_over:
            _close(connection)


def _close(connection: Connection) -> None:
    with suppress(SQLAlchemyError, OSError):
        connection.close()  # rolls back what did not commit


def _close_after(commit: asyncio.Future[None], connection: Connection) -> None:
    if not commit.cancelled() and commit.exception() is not None:
        logger.warning("a commit whose caller had gone failed: %r", commit.exception())
    _close(connection)


def translate_error(exc: BaseException) -> R3mesError | None:
    """The caller-facing meaning of a driver error, or None for a bug (it stays INTERNAL).

    The driver's own message stays in the log: it can name tables, values and hosts.
    """
    if isinstance(exc, IntegrityError) and _is_unique_violation(exc):
        return AlreadyExists("the record already exists")
    if _sqlstate(exc) in RETRYABLE_SQLSTATES or _is_sqlite_busy(exc):
        return TransactionConflict("a concurrent change conflicted; retry the call")
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        logger.warning("database connection lost: %r", getattr(exc, "orig", exc))
        return ConnectionLost("the database connection was lost; retry the call")
    if _is_unreachable(exc):
        logger.warning("database unavailable: %r", getattr(exc, "orig", exc))
        return Unavailable("the database is unavailable; retry later")
    return None


@contextmanager
def _translated() -> Iterator[None]:
    """Database failures of connect, begin and commit as the error hierarchy."""
    try:
        yield
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        raise _translated_or_same(exc) from exc


def _translated_or_same(exc: BaseException) -> BaseException:
    translated = translate_error(exc)
    return exc if translated is None else translated


async def _quietly_roll_back(transaction: AsyncTransaction) -> None:
    # The connection may be gone already: the original error is the one worth reporting.
    with suppress(SQLAlchemyError, OSError, TimeoutError):
        await transaction.rollback()


def _is_sqlite_busy(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", None)
    return type(orig).__module__.startswith("sqlite3") and any(
        sign in str(orig) for sign in SQLITE_BUSY_SIGNS
    )


def _is_unreachable(exc: BaseException) -> bool:
    if isinstance(exc, OSError | TimeoutError | PoolTimeoutError):
        return True
    sqlstate = _sqlstate(exc) or ""
    if sqlstate == QUERY_CANCELED_SQLSTATE or sqlstate.startswith(UNAVAILABLE_SQLSTATE_PREFIXES):
        return True
    if isinstance(getattr(exc, "orig", None), OSError | TimeoutError):
        return True
    if not isinstance(exc, OperationalError):
        return False
    # SQLite also raises OperationalError for bad SQL (a missing table is a bug, not an outage):
    # only its I/O failures mean the database cannot serve right now.
    if type(exc.orig).__module__.startswith("sqlite3"):
        return any(sign in str(exc.orig) for sign in SQLITE_UNAVAILABLE_SIGNS)
    return True


def _sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return code if isinstance(code, str) else None


def _is_unique_violation(exc: IntegrityError) -> bool:
    return _sqlstate(exc) == UNIQUE_VIOLATION_SQLSTATE or "UNIQUE constraint failed" in str(
        exc.orig
    )


class UtcDateTime(TypeDecorator[datetime]):
    """A point in time, stored in UTC and always handed back in UTC with its zone.

    PostgreSQL's timestamptz keeps the instant; SQLite stores text without a zone, so an aware
    time is converted to UTC before it is written (12:00+02:00 is stored as 10:00). A naive
    datetime is refused: its instant is unknowable. Every table uses this type, so no repository
    has to know which engine it runs on.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("a naive datetime cannot be stored: give it a time zone (UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
