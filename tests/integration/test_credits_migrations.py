"""The credits schema goes up, comes down and goes up again, on both engines; on PostgreSQL the
money moves' functions come and go with their migration."""

from __future__ import annotations

from sqlalchemy import inspect, text

from services.core.db import Database
from services.core.migrate import current_revision, downgrade, upgrade
from services.core.settings import Settings

TABLES = {"accounts", "reservations", "ledger_entries", "idempotency_keys"}
MOVES = {
    "grant_credits",
    "deduct_credits",
    "reserve_credits",
    "confirm_reservation",
    "roll_back_reservation",
    "expire_due",
}


async def _table_names(database: Database) -> set[str]:
    async with database.transaction() as connection:
        names: set[str] = await connection.run_sync(
            lambda sync: set(inspect(sync).get_table_names(schema=database.schema))
        )
    return names


async def _function_names(database: Database) -> set[str]:
    if database.schema is None:
        return set()
    async with database.transaction() as connection:
        rows = await connection.execute(
            text(
                "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                " WHERE n.nspname = :schema"
            ),
            {"schema": database.schema},
        )
        return {row.proname for row in rows}


async def test_credits_migrations_upgrade_downgrade_and_upgrade_again(settings: Settings) -> None:
    database = Database.from_settings(settings, "credits")
    on_postgresql = not database.is_sqlite
    try:
        await upgrade(database, "credits")
        assert await current_revision(database, "credits") == "0002"
        assert await _table_names(database) >= TABLES
        assert (await _function_names(database) >= MOVES) is on_postgresql

        await downgrade(database, "credits", "0001")
        assert await current_revision(database, "credits") == "0001"
        assert await _table_names(database) >= TABLES
        assert await _function_names(database) == set()

        await downgrade(database, "credits", "base")
        assert await current_revision(database, "credits") is None
        assert not TABLES & await _table_names(database)

        await upgrade(database, "credits")
        assert await _table_names(database) >= TABLES
        assert (await _function_names(database) >= MOVES) is on_postgresql
    finally:
        await database.dispose()
