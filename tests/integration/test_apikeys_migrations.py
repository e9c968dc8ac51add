"""The apikeys migrations go up, come down and go up again, on both engines."""

from __future__ import annotations

from sqlalchemy import inspect

from services.core.db import Database
from services.core.migrate import current_revision, downgrade, upgrade
from services.core.settings import Settings

TABLES = {"api_keys", "challenges"}


async def _table_names(database: Database) -> set[str]:
    async with database.transaction() as connection:
        names: set[str] = await connection.run_sync(
            lambda sync: set(inspect(sync).get_table_names(schema=database.schema))
        )
    return names


async def test_apikeys_migrations_upgrade_downgrade_and_upgrade_again(settings: Settings) -> None:
    database = Database.from_settings(settings, "apikeys")
    try:
        await upgrade(database, "apikeys")
        assert await current_revision(database, "apikeys") == "0001"
        assert await _table_names(database) >= TABLES

        await downgrade(database, "apikeys", "base")
        assert await current_revision(database, "apikeys") is None
        assert not TABLES & await _table_names(database)

        await upgrade(database, "apikeys")
        assert await _table_names(database) >= TABLES
    finally:
        await database.dispose()
