"""Alembic migrations, one history per service (services/<name>/migrations/).

Services run them at startup in embedded mode; deployments run `make migrate` (this module's
main) once per release. On PostgreSQL each service's tables and its alembic_version table live in
the service's own schema; SQLite has one file per service instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, MetaData, text

from services.core.db import Database
from services.core.logging import configure_logging
from services.core.registry import NAMES
from services.core.settings import ServiceName, Settings

SERVICES_ROOT = Path(__file__).resolve().parent.parent


def alembic_config(service: ServiceName, database: Database) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SERVICES_ROOT / service / "migrations"))
    config.attributes["schema"] = database.schema
    return config


async def upgrade(database: Database, service: ServiceName, revision: str = "head") -> None:
    await _run(database, service, lambda config: command.upgrade(config, revision))


async def downgrade(database: Database, service: ServiceName, revision: str) -> None:
    await _run(database, service, lambda config: command.downgrade(config, revision))


async def current_revision(database: Database, service: ServiceName) -> str | None:
    revisions: list[str | None] = []

    def read(config: Config) -> None:
        migration_context = MigrationContext.configure(
            config.attributes["connection"],
            opts={"version_table_schema": database.schema},
        )
        revisions.append(migration_context.get_current_revision())

    await _run(database, service, read)
    return revisions[0]


async def _run(
    database: Database, service: ServiceName, action: Callable[[Config], object]
) -> None:
    config = alembic_config(service, database)
    async with database.transaction() as connection:
        if database.schema is not None:
            # Held until commit: replicas told to migrate on start take turns, and the second
            # finds the schema at head already.
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:schema))"), {"schema": database.schema}
            )
            await connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{database.schema}"'))

        def run_sync(sync_connection: Connection) -> None:
            config.attributes["connection"] = sync_connection
            action(config)

        await connection.run_sync(run_sync)


def run_migrations(target_metadata: MetaData) -> None:
    """The body of every service's migrations/env.py: migrate on the connection we were handed."""
    connection: Connection = context.config.attributes["connection"]
    schema: str | None = context.config.attributes["schema"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table_schema=schema,
        include_schemas=schema is not None,
    )
    with context.begin_transaction():
        context.run_migrations()


async def migrate_all(settings: Settings, services: Sequence[ServiceName]) -> None:
    for service in services:
        if not (SERVICES_ROOT / service / "migrations").is_dir():
            continue
        database = Database.from_settings(settings, service)
        try:
            await upgrade(database, service)
        finally:
            await database.dispose()
        print(f"{service}: migrated to head")


def main() -> None:
    settings = Settings()
    configure_logging(settings)
    asyncio.run(migrate_all(settings, NAMES))


if __name__ == "__main__":
    main()


async def migrate_on_start(database: Database, service: ServiceName, settings: Settings) -> None:
    """Embedded mode migrates itself; a shared database is migrated by `make migrate` instead,
    so that several replicas starting at once never race on the same migration."""
    enabled = settings.migrate_on_start
    if enabled if enabled is not None else database.is_sqlite:
        await upgrade(database, service)
