"""Every migration step goes up, comes down and goes up again, on both engines."""

from __future__ import annotations

import asyncio
import os
import sys
from asyncio.subprocess import PIPE

from sqlalchemy import column, inspect, table, update

from services.core.db import Database
from services.core.migrate import behind, current_revision, downgrade, migrate_all, upgrade
from services.core.registry import NAMES
from services.core.settings import Settings


async def _table_names(database: Database) -> set[str]:
    async with database.transaction() as connection:
        names = await connection.run_sync(
            lambda sync: set(inspect(sync).get_table_names(schema=database.schema))
        )
    return names


def _environment(settings: Settings) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("R3MES_")},
        "R3MES_DATA_DIR": str(settings.data_dir),
        "R3MES_SCHEMA_SUFFIX": settings.schema_suffix,
        **({"R3MES_DATABASE_URL": settings.database_url} if settings.database_url else {}),
    }


async def test_users_migrations_upgrade_downgrade_and_upgrade_again(settings: Settings) -> None:
    database = Database.from_settings(settings, "users")
    try:
        await upgrade(database, "users")
        assert await current_revision(database, "users") == "0001"
        assert "users" in await _table_names(database)

        await downgrade(database, "users", "base")
        assert await current_revision(database, "users") is None
        assert "users" not in await _table_names(database)

        await upgrade(database, "users")
        assert await current_revision(database, "users") == "0001"
        assert "users" in await _table_names(database)
    finally:
        await database.dispose()


async def test_make_migrate_brings_every_service_with_migrations_to_head(
    settings: Settings,
) -> None:
    await migrate_all(settings, NAMES)

    database = Database.from_settings(settings, "users")
    try:
        assert await current_revision(database, "users") == "0001"
    finally:
        await database.dispose()


async def test_replicas_migrating_at_once_take_turns_and_all_end_at_head(
    settings: Settings,
) -> None:
    replicas = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.core.migrate", env=_environment(settings), stderr=PIPE
        )
        for _ in range(3)
    ]
    outputs = await asyncio.gather(*(replica.communicate() for replica in replicas))

    assert [replica.returncode for replica in replicas] == [0, 0, 0], outputs
    database = Database.from_settings(settings, "users")
    try:
        assert await current_revision(database, "users") == "0001"
    finally:
        await database.dispose()


async def test_a_pod_waiting_for_the_migration_starts_once_the_migration_job_has_run(
    settings: Settings,
) -> None:
    waiter = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "services.core.migrate", "--wait"),
        env={**_environment(settings), "R3MES_SERVICES": "users,credits"},
        stdout=PIPE,
        stderr=PIPE,
    )
    assert waiter.stdout is not None
    said_first = await waiter.stdout.readline()

    await migrate_all(settings, NAMES)
    said_last, errors = await waiter.communicate()

    assert said_first == b"waiting for the migration of users, credits\n", errors
    assert said_last == b"every schema is migrated\n", errors
    assert waiter.returncode == 0
    assert await behind(settings, NAMES) == []


async def test_only_a_schema_lacking_a_migration_of_this_release_holds_its_pods_back(
    settings: Settings,
) -> None:
    await migrate_all(settings, NAMES)
    users = Database.from_settings(settings, "users")
    credits = Database.from_settings(settings, "credits")
    try:
        # A newer release migrated users past what this code knows (a rollback of the code).
        version = table("alembic_version", column("version_num"), schema=users.schema)
        async with users.transaction() as connection:
            await connection.execute(update(version).values(version_num="from_a_newer_release"))
        await downgrade(credits, "credits", "base")

        assert await behind(settings, NAMES) == ["credits"]
    finally:
        await users.dispose()
        await credits.dispose()
