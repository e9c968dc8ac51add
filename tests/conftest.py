"""Shared fixtures: settings for each storage engine, so storage tests run on SQLite and PostgreSQL.

PostgreSQL tests use the `test` database on 127.0.0.1 and schemas with a suffix unique to this run,
dropped at the end. A missing server fails the run. Only an explicit R3MES_REQUIRE_POSTGRES=0 leaves
the PostgreSQL tests out: they are then not collected at all (the run's header says so), so
nothing is ever counted as passed that did not run.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from pydantic import SecretStr

from services.core.settings import Settings

POSTGRES_URL = os.environ.get(
    "R3MES_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
INTERNAL_TOKEN = "test-internal-token"
UNREACHABLE = "127.0.0.1:1"
RUN_SUFFIX = f"_t{uuid.uuid4().hex[:10]}"
POSTGRES_OPTED_OUT = os.environ.get("R3MES_REQUIRE_POSTGRES", "1") in ("0", "false")
ENGINES = ["sqlite"] if POSTGRES_OPTED_OUT else ["sqlite", "postgres"]


def pytest_report_header() -> str:
    if POSTGRES_OPTED_OUT:
        return "PostgreSQL tests NOT collected (R3MES_REQUIRE_POSTGRES=0)"
    return f"PostgreSQL tests on {POSTGRES_URL} (required)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if POSTGRES_OPTED_OUT:
        kept = [item for item in items if item.get_closest_marker("postgres") is None]
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept


def _postgres_dsn() -> str:
    return POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")


async def _postgres_reachable() -> str | None:
    try:
        connection = await asyncpg.connect(_postgres_dsn(), timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        return f"PostgreSQL at {POSTGRES_URL} is not reachable: {exc!r}"
    await connection.close()
    return None


@pytest.fixture(scope="session")
def postgres_available() -> Iterator[None]:
    problem = asyncio.run(_postgres_reachable())
    if problem is not None:
        pytest.fail(problem + " (set R3MES_REQUIRE_POSTGRES=0 to leave PostgreSQL tests out)")
    yield
    asyncio.run(_drop_run_schemas())


async def _drop_run_schemas() -> None:
    connection = await asyncpg.connect(_postgres_dsn())
    try:
        rows = await connection.fetch(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", f"%{RUN_SUFFIX}%"
        )
        for row in rows:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{row["nspname"]}" CASCADE')
    finally:
        await connection.close()


def settings_for(engine: str, data_dir: Path, suffix: str) -> Settings:
    """Settings of one storage engine; `suffix` gives PostgreSQL schemas of their own."""
    settings = Settings(
        data_dir=data_dir,
        internal_token=SecretStr(INTERNAL_TOKEN),
        # Peers nobody listens on: a test that needs credits or mining starts its own.
        credits_target=UNREACHABLE,
        mining_target=UNREACHABLE,
        apikeys_target=UNREACHABLE,
        users_target=UNREACHABLE,
        serving_target=UNREACHABLE,
    )
    if engine == "sqlite":
        return settings
    return settings.model_copy(
        update={"database_url": POSTGRES_URL, "schema_suffix": suffix, "migrate_on_start": True}
    )


@pytest.fixture(scope="session", params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        request.getfixturevalue("postgres_available")
    name: str = request.param
    return name


@pytest.fixture
def settings(engine: str, tmp_path: Path) -> Settings:
    """Settings on the current engine with storage of this test alone: its own SQLite folder,
    or its own PostgreSQL schemas."""
    return settings_for(engine, tmp_path, suffix=f"{RUN_SUFFIX}_{uuid.uuid4().hex[:6]}")


@pytest.fixture(scope="session", autouse=True)
def serving_nodes_on_loopback() -> Iterator[None]:
    """Tests run their serving nodes on loopback, as `make run` does: serving's own setting
    (services/serving/settings.py), read from the environment when the service is built."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("R3MES_SERVING_PRIVATE_NETWORKS", '["127.0.0.0/8"]')
        yield
