"""The credits schema goes up, comes down and goes up again, on both engines."""

from __future__ import annotations

from sqlalchemy import inspect

from services.core.db import Database
from services.core.migrate import current_revision, downgrade, upgrade
from services.core.settings import Settings

TABLES = {"accounts", "reservations", "ledger_entries", "idempotency_keys"}


async def _table_names(database: Database) -> set[str]:
    async with database.transaction() as connection:
        names: set[str] = await connection.run_sync(
            lambda sync: set(inspect(sync).get_table_names(schema=database.schema))
        )
    return names


async def test_credits_migrations_upgrade_downgrade_and_upgrade_again(settings: Settings) -> None:
    database = Database.from_settings(settings, "credits")
    try:
        await upgrade(database, "credits")
        assert await current_revision(database, "credits") == "0001"
        assert await _table_names(database) >= TABLES

        await downgrade(database, "credits", "base")
        assert await current_revision(database, "credits") is None
        assert not TABLES & await _table_names(database)

        await upgrade(database, "credits")
        assert await _table_names(database) >= TABLES
    finally:
        await database.dispose()
