"""The serving migrations go up, come down and go up again, on both engines."""

from __future__ import annotations

from sqlalchemy import inspect

from services.core.db import Database
from services.core.migrate import current_revision, downgrade, upgrade
from services.core.settings import Settings

TABLES = {"nodes", "offers", "loras"}


async def _table_names(database: Database) -> set[str]:
    async with database.transaction() as connection:
        names: set[str] = await connection.run_sync(
            lambda sync: set(inspect(sync).get_table_names(schema=database.schema))
        )
    return names


async def test_serving_migrations_upgrade_downgrade_and_upgrade_again(settings: Settings) -> None:
    database = Database.from_settings(settings, "serving")
    try:
        await upgrade(database, "serving")
        assert await current_revision(database, "serving") == "0001"
        assert await _table_names(database) >= TABLES

        await downgrade(database, "serving", "base")
        assert await current_revision(database, "serving") is None
        assert not TABLES & await _table_names(database)

        await upgrade(database, "serving")
        assert await _table_names(database) >= TABLES
    finally:
        await database.dispose()
