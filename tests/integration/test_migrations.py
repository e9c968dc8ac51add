"""Every migration step goes up, comes down and goes up again, on both engines."""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from asyncio.subprocess import PIPE
from typing import Any

import pytest
from sqlalchemy import Connection, column, inspect, table, update

from services.core.db import Database
from services.core.migrate import (
    behind,
    current_revision,
    downgrade,
    history,
    migrate_all,
    upgrade,
)
from services.core.registry import NAMES
from services.core.settings import Settings


def _environment(settings: Settings) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("R3MES_")},
        "R3MES_DATA_DIR": str(settings.data_dir),
        "R3MES_SCHEMA_SUFFIX": settings.schema_suffix,
        **({"R3MES_DATABASE_URL": settings.database_url} if settings.database_url else {}),
    }


# What a step must give back when it is undone: every table with its columns, keys, indexes
# and constraints, as the database reports them.
Schema = dict[str, dict[str, Any]]


async def _schema(database: Database) -> Schema:
    def read(sync: Connection) -> Schema:
        inspector = inspect(sync)
        schema = database.schema
        return {
            name: {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                    for c in inspector.get_columns(name, schema=schema)
                ],
                "primary_key": inspector.get_pk_constraint(name, schema=schema)[
                    "constrained_columns"
                ],
                "indexes": sorted(
                    (i["name"] or "", tuple(i["column_names"]), bool(i["unique"]))
                    for i in inspector.get_indexes(name, schema=schema)
                ),
                "unique": sorted(
                    tuple(u["column_names"])
                    for u in inspector.get_unique_constraints(name, schema=schema)
                ),
                "checks": sorted(
                    c["sqltext"] for c in inspector.get_check_constraints(name, schema=schema)
                ),
                "foreign_keys": sorted(
                    (tuple(f["constrained_columns"]), f["referred_table"])
                    for f in inspector.get_foreign_keys(name, schema=schema)
                ),
            }
            for name in inspector.get_table_names(schema=schema)
            if name != "alembic_version"
        }

    async with database.transaction() as connection:
        return await connection.run_sync(read)


@pytest.mark.parametrize("service", NAMES)
async def test_every_migration_step_goes_up_comes_down_to_what_was_there_and_goes_up_again(
    settings: Settings, service: str
) -> None:
    """Each step of each registered service's history on its own, oldest first, so the undo of
    every step is checked against the schema the step started from (a rollback undoes one
    release's migration, not the whole history). A service added later is covered unasked."""
    steps = list(reversed(list(history(service).walk_revisions())))
    database = Database.from_settings(settings, service)
    try:
        before = await _schema(database)
        assert before == {}
        for step in steps:
            # Histories are linear (one head, no merges): a step undoes to one revision.
            assert not isinstance(step.down_revision, tuple | list)
            await upgrade(database, service, step.revision)
            after = await _schema(database)

            await downgrade(database, service, step.down_revision or "base")
            assert await current_revision(database, service) == step.down_revision
            assert await _schema(database) == before

            await upgrade(database, service, step.revision)
            assert await current_revision(database, service) == step.revision
            assert await _schema(database) == after
            before = after
        # At head the schema is the one the service's tables declare: no table left out of (or
        # added behind) a migration.
        tables = importlib.import_module(f"services.{service}.tables").metadata.tables.values()
        assert set(before) == {table.name for table in tables}
    finally:
        await database.dispose()


async def test_make_migrate_brings_every_service_with_migrations_to_head(
    settings: Settings,
) -> None:
    await migrate_all(settings, NAMES)

    database = Database.from_settings(settings, "users")
    try:
        assert await current_revision(database, "users") == "0002"
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
        assert await current_revision(database, "users") == "0002"
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


async def test_the_migrate_command_undoes_one_services_migrations_and_names_where_it_stands(
    settings: Settings,
) -> None:
    await migrate_all(settings, NAMES)
    undo = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "services.core.migrate", "--downgrade", "credits", "base"),
        env=_environment(settings),
        stdout=PIPE,
        stderr=PIPE,
    )
    said, errors = await undo.communicate()

    assert (undo.returncode, said) == (0, b"credits: at base\n"), errors
    assert await behind(settings, NAMES) == ["credits"]
