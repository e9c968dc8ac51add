"""Embedded mode: writers are serialized up front, readers never wait for them."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import text

from services.core.db import Database
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
