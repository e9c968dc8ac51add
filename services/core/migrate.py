"""Alembic migrations, one history per service (services/<name>/migrations/).

Services run them at startup in embedded mode; deployments run `make migrate` (this module's
main) once per release. With `--wait` it migrates nothing and returns once the hosted services'
schemas are migrated: Kubernetes starts each pod so, after the migration Job (deploy/k8s).
On PostgreSQL each service's tables and its alembic_version table live in the service's own
schema; SQLite has one file per service instead.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, text

from services.core.db import Database
from services.core.errors import Unavailable
from services.core.logging import configure_logging
from services.core.registry import NAMES, selected
from services.core.settings import ServiceName, Settings

SERVICES_ROOT = Path(__file__).resolve().parent.parent
WAIT_POLL_SECONDS = 2.0


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


def _with_migrations(services: Sequence[ServiceName]) -> list[ServiceName]:
    return [s for s in services if (SERVICES_ROOT / s / "migrations").is_dir()]


async def _downgrade_one(settings: Settings, service: ServiceName, revision: str) -> None:
    database = Database.from_settings(settings, service)
    try:
        await downgrade(database, service, revision)
        print(f"{service}: at {await current_revision(database, service) or 'base'}")
    finally:
        await database.dispose()


async def migrate_all(settings: Settings, services: Sequence[ServiceName]) -> None:
    for service in _with_migrations(services):
        database = Database.from_settings(settings, service)
        try:
            await upgrade(database, service)
        finally:
            await database.dispose()
        print(f"{service}: migrated to head")


def history(service: ServiceName) -> ScriptDirectory:
    """The service's migration scripts, read from disk (no database needed)."""
    config = Config()
    config.set_main_option("script_location", str(SERVICES_ROOT / service / "migrations"))
    return ScriptDirectory.from_config(config)


def _behind(service: ServiceName, revision: str | None) -> bool:
    """Whether a schema at `revision` still needs migrations this code ships. A revision this
    code does not know was written by a newer release: ahead, not behind (its migrations keep
    older code working, so a rolled-back release still starts)."""
    script = history(service)
    known = {r.revision for r in script.walk_revisions()}
    return revision is None or (revision in known and revision != script.get_current_head())


async def behind(settings: Settings, services: Sequence[ServiceName]) -> list[ServiceName]:
    """The services whose schema still lacks a migration of this release."""
    late = []
    for service in _with_migrations(services):
        database = Database.from_settings(settings, service)
        try:
            if _behind(service, await current_revision(database, service)):
                late.append(service)
        finally:
            await database.dispose()
    return late


async def wait_until_migrated(
    settings: Settings, services: Sequence[ServiceName], poll_seconds: float = WAIT_POLL_SECONDS
) -> None:
    """Return once no schema of `services` lacks a migration of this release: how a Kubernetes
    pod waits, in an init container, for the release's migration Job (deploy/k8s), needing no
    access to the Kubernetes API. Says what it waits for whenever that changes."""
    said = ""
    while True:
        try:
            late = await behind(settings, services)
            waiting = f"waiting for the migration of {', '.join(late)}" if late else ""
        except Unavailable as error:
            waiting = f"waiting for the database: {error}"
        if not waiting:
            print("every schema is migrated", flush=True)
            return
        if waiting != said:
            print(waiting, flush=True)
            said = waiting
        await asyncio.sleep(poll_seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.core.migrate", description=__doc__)
    parser.add_argument(
        "--wait",
        action="store_true",
        help="migrate nothing: wait until the services of R3MES_SERVICES are migrated",
    )
    parser.add_argument(
        "--downgrade",
        nargs=2,
        metavar=("SERVICE", "REVISION"),
        help="undo SERVICE's migrations down to REVISION (base: all of them); run it with the "
        "release being rolled back to still stopped, since its code is what the schema must fit",
    )
    args = parser.parse_args(argv)
    settings = Settings()
    configure_logging(settings)
    if args.downgrade:
        service, revision = args.downgrade
        if service not in NAMES:
            parser.error(f"unknown service {service}: choose among {', '.join(NAMES)}")
        asyncio.run(_downgrade_one(settings, service, revision))
    elif args.wait:
        services = [spec.name for spec in selected(settings.services)]
        asyncio.run(wait_until_migrated(settings, services))
    else:
        asyncio.run(migrate_all(settings, NAMES))


if __name__ == "__main__":
    main()


async def migrate_on_start(database: Database, service: ServiceName, settings: Settings) -> None:
    """Embedded mode migrates itself; a shared database is migrated by `make migrate` instead,
    so that several replicas starting at once never race on the same migration."""
    enabled = settings.migrate_on_start
    if enabled if enabled is not None else database.is_sqlite:
        await upgrade(database, service)
