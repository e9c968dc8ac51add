"""A database holding tables of a test's own, on the test's engine, dropped with its schema."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import MetaData, text

from services.core.db import Database
from services.core.settings import Settings


@asynccontextmanager
async def database_with(settings: Settings, metadata: MetaData) -> AsyncIterator[Database]:
    """The `users` database of these settings with `metadata`'s tables created in it (in the
    test's own schema on PostgreSQL, the test's own file on SQLite)."""
    database = Database.from_settings(settings, "users")
    async with database.transaction() as connection:
        if database.schema is not None:
            await connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{database.schema}"'))
        await connection.run_sync(metadata.create_all)
    try:
        yield database
    finally:
        await database.dispose()
