"""Embedded mode: writers are serialized up front, readers never wait for them, and a short unit
of work (a lone read, a money move) runs on the event loop's own thread unless it would wait."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Pool, event, text

from services.core.db import Database
from services.core.errors import AlreadyExists
from services.core.migrate import upgrade
from services.core.settings import Settings


async def test_a_read_only_transaction_does_not_wait_for_an_open_write_transaction(
    tmp_path: Path,
) -> None:
    database = Database.from_settings(Settings(data_dir=tmp_path), "users")
    await upgrade(database, "users")
    writer_inside = asyncio.Event()
    release_writer = asyncio.Event()

    async def hold_the_write_lock() -> None:
        async with database.transaction() as connection:
            await connection.execute(
                text("INSERT INTO users VALUES ('remes1held', '2026-01-01 00:00:00')")
            )
            writer_inside.set()
            await release_writer.wait()

    writer = asyncio.create_task(hold_the_write_lock())
    await writer_inside.wait()
    try:
        async with asyncio.timeout(1):  # the busy timeout is 5 s: waiting would show here
            async with database.transaction(read_only=True) as connection:
                seen = (await connection.execute(text("SELECT count(*) FROM users"))).scalar()
    finally:
        release_writer.set()
        await writer
    async with database.transaction(read_only=True) as connection:
        after = (await connection.execute(text("SELECT count(*) FROM users"))).scalar()
    await database.dispose()

    assert seen == 0, "a reader sees only committed rows"
    assert after == 1


@contextmanager
def thread_id_in_sql() -> Iterator[None]:
    """`SELECT thread_id()` tells which thread ran the statement, on every new connection."""

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.create_function("thread_id", 0, threading.get_ident)

    event.listen(Pool, "connect", on_connect)
    try:
        yield
    finally:
        event.remove(Pool, "connect", on_connect)


async def test_a_lone_read_runs_on_the_event_loops_thread_and_a_unit_of_work_on_the_drivers(
    tmp_path: Path,
) -> None:
    database = Database.from_settings(Settings(data_dir=tmp_path), "users")
    await upgrade(database, "users")
    await database.dispose()  # its pooled connections predate the function
    with thread_id_in_sql():
        async with database.transaction(read_only=True, one_statement=True) as connection:
            await connection.execute(text("SELECT count(*) FROM users"))
            lone = (await connection.execute(text("SELECT thread_id()"))).scalar()
        async with database.transaction(read_only=True) as connection:
            unit = (await connection.execute(text("SELECT thread_id()"))).scalar()
    await database.dispose()

    assert lone == threading.get_ident(), "no hop to a thread and back"
    assert unit != threading.get_ident(), "units of several statements keep aiosqlite's thread"


INSERT = "INSERT INTO users VALUES (:wallet, '2026-01-01 00:00:00')"
COUNT = "SELECT count(*) FROM users"


async def _threaded_database(tmp_path: Path) -> Database:
    database = Database.from_settings(Settings(data_dir=tmp_path), "users")
    await upgrade(database, "users")
    await database.dispose()  # its pooled connections predate the function
    return database


async def _count(database: Database) -> int:
    async with database.transaction(read_only=True) as connection:
        return int((await connection.execute(text(COUNT))).scalar_one())


async def test_a_short_write_runs_on_the_loops_thread_and_commits_when_the_lock_is_free(
    tmp_path: Path,
) -> None:
    with thread_id_in_sql():
        database = await _threaded_database(tmp_path)
        async with database.transaction(one_statement=True) as connection:
            await connection.execute(text(INSERT), {"wallet": "remes1short"})
            ran_on = (await connection.execute(text("SELECT thread_id()"))).scalar()
        stored = await _count(database)
    await database.dispose()

    assert ran_on == threading.get_ident(), "no hop to a thread and back"
    assert stored == 1


async def test_a_short_write_waits_for_a_held_write_lock_on_the_drivers_thread_never_the_loops(
    tmp_path: Path,
) -> None:
    with thread_id_in_sql():
        database = await _threaded_database(tmp_path)
        holding, release = asyncio.Event(), asyncio.Event()

        async def hold_the_write_lock() -> None:
            async with database.transaction() as connection:
                await connection.execute(text(INSERT), {"wallet": "remes1holder"})
                holding.set()
                await release.wait()

        async def short_write() -> Any:
            async with database.transaction(one_statement=True) as connection:
                await connection.execute(text(INSERT), {"wallet": "remes1waiter"})
                return (await connection.execute(text("SELECT thread_id()"))).scalar()

        holder = asyncio.create_task(hold_the_write_lock())
        await holding.wait()
        waiter = asyncio.create_task(short_write())
        # The loop keeps turning while the short write waits (on the loop's thread it would
        # hold everything for up to the 5 s busy timeout).
        ticks = 0
        async with asyncio.timeout(1):
            while ticks < 10:
                await asyncio.sleep(0.01)
                ticks += 1
        waiting = not waiter.done()
        release.set()
        await holder
        ran_on = await waiter
        stored = await _count(database)
    await database.dispose()

    assert waiting
    assert ran_on != threading.get_ident()
    assert stored == 2


async def test_a_short_write_that_fails_on_the_loops_thread_leaves_nothing_and_says_why(
    tmp_path: Path,
) -> None:
    database = await _threaded_database(tmp_path)
    async with database.transaction(one_statement=True) as connection:
        await connection.execute(text(INSERT), {"wallet": "remes1first"})

    async def second_then_first_again() -> None:
        async with database.transaction(one_statement=True) as connection:
            await connection.execute(text(INSERT), {"wallet": "remes1second"})
            await connection.execute(text(INSERT), {"wallet": "remes1first"})

    with pytest.raises(AlreadyExists):
        await second_then_first_again()
    stored = await _count(database)
    await database.dispose()

    assert stored == 1, "the block's first row rolled back with it"


async def test_a_caller_cancelled_while_its_short_write_commits_leaves_it_committed_and_usable(
    tmp_path: Path,
) -> None:
    database = await _threaded_database(tmp_path)
    block_done = asyncio.Event()

    async def short_write() -> None:
        async with database.transaction(one_statement=True) as connection:
            await connection.execute(text(INSERT), {"wallet": "remes1cancelled"})
            block_done.set()

    writer = asyncio.create_task(short_write())
    await block_done.wait()  # the writer now waits for its commit, on a thread
    writer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await writer
    async with database.transaction(one_statement=True) as connection:
        await connection.execute(text(INSERT), {"wallet": "remes1next"})
    stored = await _count(database)
    await database.dispose()

    assert writer.cancelled()
    assert stored == 2, "the commit went on without its caller, and the next write after it"
