"""The kernel's unit of work as a block (`async for attempt in uow.attempts()`), over state held
in memory: what commits, what runs again after a conflict, what reaches the caller."""

from __future__ import annotations

import pytest

from services.core.db import ConnectionLost
from services.core.errors import Aborted, TransactionConflict
from tests.fakes.uow import FakeUnitOfWork

Counts = dict[str, int]
Unit = FakeUnitOfWork[Counts, Counts]


def unit(attempts: int = 4) -> Unit:
    return FakeUnitOfWork("credits", {"done": 0}, lambda counts: counts, attempts=attempts)


async def test_a_block_that_met_a_conflict_runs_again_and_only_its_last_run_commits() -> None:
    uow = unit()
    runs = 0

    async for attempt in uow.attempts():
        async with attempt as counts:
            runs += 1
            counts["done"] += 1
            if runs < 3:
                raise TransactionConflict("a concurrent unit of work")

    assert runs == 3
    assert uow.state == {"done": 1}


async def test_a_block_that_lost_its_connection_runs_again_on_a_fresh_one() -> None:
    uow = unit()
    runs = 0

    async for attempt in uow.attempts():
        async with attempt as counts:
            runs += 1
            counts["done"] += 1
            if runs == 1:
                raise ConnectionLost("the database restarted")

    assert (runs, uow.state) == (2, {"done": 1})


async def test_a_block_that_returns_from_inside_commits_what_it_wrote() -> None:
    uow = unit()

    async def add_one() -> int:
        async for attempt in uow.attempts():
            async with attempt as counts:
                counts["done"] += 1
                return counts["done"]
        raise AssertionError("unreachable: an attempt returns, or the last one raises")

    assert await add_one() == 1
    assert uow.state == {"done": 1}


async def test_a_unit_refused_at_begin_runs_its_block_once_it_begins() -> None:
    uow = unit()
    uow.conflict_on_next_units(2)
    runs = 0

    async for attempt in uow.attempts():
        async with attempt as counts:
            runs += 1
            counts["done"] += 1

    assert (runs, uow.state) == (1, {"done": 1})


async def test_a_block_that_keeps_conflicting_is_aborted_after_the_last_attempt() -> None:
    uow = unit(attempts=3)
    runs = 0

    async def always_conflicting() -> None:
        nonlocal runs
        async for attempt in uow.attempts():
            async with attempt as counts:
                runs += 1
                counts["done"] += 1
                raise TransactionConflict("a concurrent unit of work")

    with pytest.raises(Aborted) as raised:
        await always_conflicting()

    assert (runs, raised.value.reason, uow.state) == (3, "CONCURRENT_CHANGE", {"done": 0})


async def test_a_block_that_raised_another_error_is_not_run_again_and_leaves_no_trace() -> None:
    uow = unit()
    runs = 0

    async def failing() -> None:
        nonlocal runs
        async for attempt in uow.attempts():
            async with attempt as counts:
                runs += 1
                counts["done"] += 1
                raise KeyError("a bug")

    with pytest.raises(KeyError):
        await failing()

    assert (runs, uow.state) == (1, {"done": 0})
