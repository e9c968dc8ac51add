"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from services.core.db import Database
from services.core.settings import Settings
from services.core.testing import FakeClock, RedisServer, own_redis_server
from tests.integration.credits_support import Credits, assert_invariants, running_credits
from tests.integration.kernel_tables import kernel_database
from tests.integration.mining_support import Mining, running_mining
from tests.integration.serving_support import Network, running_network


@pytest.fixture
async def credits(settings: Settings) -> AsyncIterator[Credits]:
    """A credits server on the test's engine; the ledger's invariants are checked after the
    test, against storage."""
    async with running_credits(settings) as running:
        yield running
        await assert_invariants(running)


@pytest.fixture
async def mining(settings: Settings) -> AsyncIterator[Mining]:
    """A mining server on the test's engine, its clock standing until the test moves it."""
    async with running_mining(settings, FakeClock()) as running:
        yield running


@pytest.fixture
async def network(settings: Settings) -> AsyncIterator[Network]:
    """The whole suite in one process on the test's engine, with its clock; the reference nodes
    a test starts through it stop with it."""
    async with running_network(settings) as running:
        yield running


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    """The kernel's own test tables (tests/integration/kernel_tables.py), empty, on the test's
    engine."""
    async with kernel_database(settings) as database:
        yield database


@pytest.fixture
def fresh_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone, for a test that stops it or that needs its counters
    empty (`redis_server`, in tests/conftest.py, is shared by the tests of a module)."""
    with own_redis_server(tmp_path) as server:
        yield server
