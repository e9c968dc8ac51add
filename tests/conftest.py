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
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from pydantic import SecretStr
from xdist.scheduler import LoadScopeScheduling

from services.core.registry import NAMES
from services.core.settings import Settings
from services.core.testing import FakeClock, FakeMonotonic, RedisServer, own_redis_server

POSTGRES_URL = os.environ.get(
    "R3MES_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
INTERNAL_TOKEN = "test-internal-token"
UNREACHABLE = "127.0.0.1:1"
START = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
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


def worker_group(nodeid: str) -> str:
    """The tests that one worker of `pytest -n N` (`make test`) runs one after another. A file
    stays whole, so its module fixtures start once and its tests keep their order. The
    end-to-end tests of the shared suite (tests/e2e's `stack`) share one worker: each worker
    would start its own suite of service processes and Envoy, and on two cores four suites at
    once ran slower than one, with the rate-limit tests' windows stretched past what they
    assert. The end-to-end tests that start processes of their own (tests/e2e/standalone:
    make run, replicas, Prometheus, canaries) take turns on a second worker, for the same
    reason. So do the browser tests (each file a suite and a Chromium of its own: two at once
    beside the end-to-end workers would starve the two cores), and the files hungriest for
    PostgreSQL connections (MANY_CONNECTIONS)."""
    path = nodeid.split("::")[0]
    for tier in ("tests/e2e/standalone", "tests/e2e", "tests/browser"):
        if path.startswith(f"{tier}/"):
            return tier
    return "many connections" if path in MANY_CONNECTIONS else path


# Several service processes, or tens of concurrent writers, each process with its own pool: one
# of these files at a time keeps a run further under the server's max_connections (100 by
# default; a run on four workers, beside other runs on the same server, met "too many clients").
MANY_CONNECTIONS = frozenset(
    f"tests/integration/{name}.py"
    for name in (
        "test_apikeys_revocation_across_processes",
        "test_credits_concurrency",
        "test_credits_processes",
        "test_workers",
    )
)


# pytest-xdist has no types; its `--dist loadgroup` markers are lost on pytest 9 (xdist 3.8
# renames `item._nodeid`, which pytest 9 no longer reads), so the groups are its scheduler's
# scopes instead.
class GroupedScheduling(LoadScopeScheduling):  # type: ignore[misc]
    def _split_scope(self, nodeid: str) -> str:
        return worker_group(nodeid)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> GroupedScheduling:
    return GroupedScheduling(config, log)


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
        # A run creates and drops some thousand schemas' tables, functions and triggers. Where
        # autovacuum is off (as on this project's CI machines) their dead catalog rows stayed,
        # slowing every later run's DDL and lookups: six runs grew the database from 7 to 285 MB.
        await connection.execute("VACUUM")
    finally:
        await connection.close()


def settings_for(engine: str, data_dir: Path, suffix: str) -> Settings:
    """Settings of one storage engine; `suffix` gives PostgreSQL schemas of their own."""
    settings = Settings(
        data_dir=data_dir,
        internal_token=SecretStr(INTERNAL_TOKEN),
        # Peers nobody listens on: a test that needs credits or mining starts its own.
        targets=dict.fromkeys(NAMES, UNREACHABLE),
        # Past the 2 s default: on a machine busy with the whole suite (a browser and several
        # stacks beside), a peer call could miss it and leave fields out of an answer. Tests
        # of what a hanging peer does set their own.
        call_timeout_seconds=10.0,
        # A test's servers are stopped once nothing calls them: the quarter of a second a
        # draining server waits for a storm of calls to dry up was a fifth of the suite's time.
        # The tests of draining itself set their own.
        drain_quiet_seconds=0.01,
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


@pytest.fixture
def clock() -> FakeClock:
    """Wall-clock time standing at START until the test moves it."""
    return FakeClock(START)


@pytest.fixture
def ticks() -> FakeMonotonic:
    """Monotonic time (as `time.monotonic`) standing still until the test moves its `now`."""
    return FakeMonotonic()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of the module's own on a free port: tests never touch a shared Redis."""
    with own_redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server
