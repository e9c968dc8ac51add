"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.core.settings import Settings
from tests.integration.credits_support import Credits, assert_invariants, running_credits


@pytest.fixture
async def credits(settings: Settings) -> AsyncIterator[Credits]:
    """A credits server on the test's engine; the ledger's invariants are checked after the
    test, against storage."""
    async with running_credits(settings) as running:
        yield running
        await assert_invariants(running)
