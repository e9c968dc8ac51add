"""The transactional outbox: events written in the same transaction as the change they tell of,
then published in order by a relay (a background job of the owning service).

Each service that publishes keeps an `outbox` table in its own schema (`outbox_columns()` is its
shape, like the idempotency keys'). The events are written by a database trigger on the table
whose rows they describe (`trigger_statements`): every statement that changes such a row, in
SQL functions (credits' money moves on PostgreSQL) as in Python sequences (SQLite), writes its
event in its own transaction, and no code path added later can forget to. The trigger writes
the row's key and the columns readers show (as JSON), not a delta: see services.core.events.

The relay (`relay_job`) publishes unsent events oldest first and marks them sent; a relay that
was down, or a publisher that failed, leaves them unsent, and the next run catches up from the
table. Sent events are kept `retention` (for an operator to look at), then pruned.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from alembic import context, op
from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    Row,
    String,
    Table,
    Text,
    column,
    select,
)

from services.core.background import PeriodicJob
from services.core.clock import Clock
from services.core.db import UtcDateTime
from services.core.events import Event
from services.core.repository import BaseRepository
from services.core.uow import UnitOfWork

RepositoriesT = TypeVar("RepositoriesT")

logger = logging.getLogger(__name__)

TABLE_NAME = "outbox"
RELAY = "outbox-relay"
PRUNER = "outbox-pruner"
RELAY_BATCH = 500
PRUNE_BATCH = 10_000
PRUNE_INTERVAL_SECONDS = 60.0


def outbox_columns() -> list[Column[Any]]:
    """The table shape, fresh Column objects for a Table or a migration's create_table (with
    `sqlite_autoincrement=True`: SQLite would otherwise reuse the numbers of pruned rows, and an
    event numbered lower than one already applied would be ignored as old)."""
    return [
        Column(
            "sequence",
            BigInteger().with_variant(Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        Column("key", String(128), nullable=False),
        Column("payload", Text, nullable=False),
        Column("create_time", UtcDateTime, nullable=False),
        Column("sent_time", UtcDateTime, nullable=True),
    ]


def outbox_table(metadata: MetaData) -> Table:
    table = Table(TABLE_NAME, metadata, *outbox_columns(), sqlite_autoincrement=True)
    # The relay's one question (what is unsent, oldest first) reads only unsent rows.
    unsent = table.c.sent_time.is_(None)
    Index(
        f"ix_{TABLE_NAME}_unsent",
        table.c.sequence,
        postgresql_where=unsent,
        sqlite_where=unsent,
    )
    return table


def trigger_statements(
    dialect: str, schema: str | None, table: str, key: str, columns: Sequence[str]
) -> tuple[list[str], list[str]]:
    """DDL (to create, to drop) of the trigger writing an event of every row of `table` that is
    inserted, or updated with another value in one of `columns`: key `key`, payload a JSON
    object of `columns`. `schema`: the schema as the migration knows it (None on SQLite).
    Names are ours, never input."""
    pairs = ", ".join(f"'{column}', NEW.{column}" for column in columns)
    if dialect != "postgresql":
        return _sqlite_trigger(table, key, columns, pairs)
    if schema is None:
        raise ValueError("PostgreSQL tables live in a schema")
    s = '"' + schema.replace('"', '""') + '"'
    name = f"{table}_to_outbox"
    changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in columns)
    function = f"""
CREATE FUNCTION {s}.{name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR {changed} THEN
        INSERT INTO {s}.{TABLE_NAME} (key, payload, create_time)
        VALUES (NEW.{key}, json_build_object({pairs})::text, clock_timestamp());
    END IF;
    RETURN NULL;
END $$"""  # noqa: S608 (names of ours)
    trigger = (
        f"CREATE TRIGGER {name} AFTER INSERT OR UPDATE ON {s}.{table} "
        f"FOR EACH ROW EXECUTE FUNCTION {s}.{name}()"
    )
    drop = [f"DROP TRIGGER {name} ON {s}.{table}", f"DROP FUNCTION {s}.{name}()"]
    return [function, trigger], drop


def _sqlite_trigger(
    table: str, key: str, columns: Sequence[str], pairs: str
) -> tuple[list[str], list[str]]:
    name = f"{table}_to_outbox"
    insert = (
        f"INSERT INTO {TABLE_NAME} (key, payload, create_time) "  # noqa: S608 (names of ours)
        f"VALUES (NEW.{key}, json_object({pairs}), strftime('%Y-%m-%d %H:%M:%f', 'now'));"
    )
    changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in columns)
    create = [
        f"CREATE TRIGGER {name}_insert AFTER INSERT ON {table} BEGIN {insert} END",
        f"CREATE TRIGGER {name}_update AFTER UPDATE ON {table} WHEN {changed} BEGIN {insert} END",
    ]
    return create, [f"DROP TRIGGER {name}_insert", f"DROP TRIGGER {name}_update"]


def migrate_up(schema: str, table: str, key: str, columns: Sequence[str]) -> None:
    """In a migration: the outbox table in `schema` (as the service's tables name it) and the
    trigger on `table` writing its events. A migration that did this keeps its shape: change
    the shape only with a new migration."""
    op.create_table(TABLE_NAME, *outbox_columns(), schema=schema, sqlite_autoincrement=True)
    unsent = column("sent_time").is_(None)
    op.create_index(
        f"ix_{TABLE_NAME}_unsent",
        TABLE_NAME,
        ["sequence"],
        schema=schema,
        postgresql_where=unsent,
        sqlite_where=unsent,
    )
    for statement in _triggers(table, key, columns)[0]:
        op.execute(statement)


def migrate_down(schema: str, table: str, key: str, columns: Sequence[str]) -> None:
    """Undoes `migrate_up`: the trigger first, then the table it writes to."""
    for statement in _triggers(table, key, columns)[1]:
        op.execute(statement)
    op.drop_index(f"ix_{TABLE_NAME}_unsent", TABLE_NAME, schema=schema)
    op.drop_table(TABLE_NAME, schema=schema)


def _triggers(table: str, key: str, columns: Sequence[str]) -> tuple[list[str], list[str]]:
    # The schema this run migrates (suffixed in tests), which raw DDL must name itself.
    schema: str | None = context.config.attributes["schema"]
    return trigger_statements(op.get_bind().dialect.name, schema, table, key, columns)


class OutboxRepository(BaseRepository[Event]):
    """Subclass it with the service's own table: `table = tables.outbox`."""

    def to_domain(self, row: Row[Any]) -> Event:
        return Event(row.sequence, row.key, json.loads(row.payload))

    async def unsent(self, limit: int) -> list[Event]:
        """The oldest unsent events, locked until the unit of work ends; rows another relay
        holds are skipped (SKIP LOCKED on PostgreSQL; SQLite's write lock lets one in)."""
        c = self.table.c
        statement = (
            select(self.table)
            .where(c.sent_time.is_(None))
            .order_by(c.sequence)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [self.to_domain(row) for row in await self.execute(statement)]

    async def mark_sent(self, sequences: Sequence[int], now: datetime) -> None:
        c = self.table.c
        await self.update_returning(c.sequence.in_(sequences), values={"sent_time": now})

    async def prune(self, sent_before: datetime, limit: int) -> int:
        """Delete up to `limit` events sent before the cutoff (never an unsent one)."""
        c = self.table.c
        oldest = select(c.sequence).where(c.sent_time < sent_before).limit(limit)
        return await self.delete_matching(c.sequence.in_(oldest.scalar_subquery()))


class Publisher(Protocol):
    async def publish(self, events: Sequence[Event]) -> None:
        """Publish in this order, or raise (then none counts as sent)."""
        ...


class Discard:
    """The publisher of a process with nowhere to publish (no Redis): events are marked sent
    unread, so the outbox does not grow; readers then ask the owner instead (users: its
    peers), which is what they do without a stream anyway."""

    async def publish(self, events: Sequence[Event]) -> None:
        return None


def relay_job(
    uow: UnitOfWork[RepositoriesT],
    store: Callable[[RepositoriesT], OutboxRepository],
    publisher: Publisher,
    clock: Clock,
    interval_seconds: float,
    batch: int = RELAY_BATCH,
) -> PeriodicJob:
    """Publishes every unsent event, a batch per transaction, oldest first."""

    async def relay() -> int:
        sent = 0
        while True:
            # One transaction per batch, not retried (`begin`): its rows stay locked while they
            # are published, so relays of several replicas publish different rows. A publish
            # that fails rolls the batch back unsent, for the next run (or another replica).
            async with uow.begin() as repositories:
                outbox = store(repositories)
                events = await outbox.unsent(batch)
                if events:
                    await publisher.publish(events)
                    await outbox.mark_sent([event.sequence for event in events], clock())
            sent += len(events)
            if len(events) < batch:
                return sent

    return PeriodicJob(RELAY, interval_seconds, relay)


def pruner_job(
    uow: UnitOfWork[RepositoriesT],
    store: Callable[[RepositoriesT], OutboxRepository],
    clock: Clock,
    retention: timedelta,
    interval_seconds: float = PRUNE_INTERVAL_SECONDS,
) -> PeriodicJob:
    async def prune() -> int:
        cutoff = clock() - retention
        return await uow.run(lambda repositories: store(repositories).prune(cutoff, PRUNE_BATCH))

    return PeriodicJob(PRUNER, interval_seconds, prune)
