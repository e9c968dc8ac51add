"""Idempotency keys in the caller's unit of work, on SQLite and PostgreSQL: one effect per key,
replays of the first result, refusal of a reused key, and the sweep."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from services.core.db import Database
from services.core.idempotency import (
    IdempotencyKeyReused,
    KeyClaim,
    fingerprint_of,
    sweeper_job,
)
from services.core.settings import Settings
from services.core.testing import FakeClock
from tests.integration.kernel_tables import Account, kernel_database, unit_of_work

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class InsufficientFundsError(Exception):
    pass


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    async with kernel_database(settings) as database:
        await unit_of_work(database).run(
            lambda r: r.accounts.insert({"id": 1, "available": 100, "reserved": 0})
        )
        yield database


async def _hold(database: Database, key: str, amount: int, now: datetime = NOW) -> Account:
    async for attempt in unit_of_work(database, attempts=20).attempts():
        async with attempt as r:
            replay = await r.idempotency.claim("Hold", key, {"account": 1, "amount": amount}, now)
            if replay is None:
                changed = await r.accounts.hold(1, amount)
                if changed is None:
                    raise InsufficientFundsError
                await r.idempotency.record("Hold", key, f"{changed.available}/{changed.reserved}")
                held = changed
            else:
                available, reserved = map(int, replay.split("/"))
                held = Account(1, available, reserved)
    return held


async def _account(database: Database) -> Account | None:
    return await unit_of_work(database).run(lambda r: r.accounts.find(id=1))


async def test_a_repeat_with_the_same_key_returns_the_first_result_and_has_no_second_effect(
    database: Database,
) -> None:
    first = await _hold(database, "hold-1", 10)
    again = await _hold(database, "hold-1", 10)

    assert first == again == Account(1, 90, 10)
    assert await _account(database) == Account(1, 90, 10)


async def test_twenty_concurrent_repeats_of_one_key_have_exactly_one_effect(
    database: Database,
) -> None:
    results = await asyncio.gather(*(_hold(database, "storm", 7) for _ in range(20)))

    assert set(results) == {Account(1, 93, 7)}
    assert await _account(database) == Account(1, 93, 7)


async def test_the_same_key_with_other_parameters_is_refused_and_changes_nothing(
    database: Database,
) -> None:
    await _hold(database, "hold-1", 10)

    with pytest.raises(IdempotencyKeyReused) as raised:
        await _hold(database, "hold-1", 11)

    assert raised.value.code == "FAILED_PRECONDITION"
    assert raised.value.reason == "IDEMPOTENCY_KEY_REUSED"
    assert await _account(database) == Account(1, 90, 10)


async def test_distinct_keys_each_have_their_effect(database: Database) -> None:
    await asyncio.gather(*(_hold(database, f"k{i}", 1) for i in range(30)))

    assert await _account(database) == Account(1, 70, 30)


async def test_a_first_call_that_failed_is_not_remembered_so_its_retry_runs_afresh(
    database: Database,
) -> None:
    with pytest.raises(InsufficientFundsError):
        await _hold(database, "too-much", 101)

    await unit_of_work(database).run(
        lambda r: r.accounts.update_where({"id": 1}, {"available": 200})
    )
    retried = await _hold(database, "too-much", 101)

    assert retried == Account(1, 99, 101)


async def test_the_sweep_forgets_only_keys_older_than_the_retention(database: Database) -> None:
    await _hold(database, "old", 1, now=NOW - timedelta(days=8))
    await _hold(database, "recent", 1, now=NOW - timedelta(days=6))
    clock = FakeClock(NOW)
    job = sweeper_job(
        unit_of_work(database), lambda r: r.idempotency, clock, retention=timedelta(days=7)
    )

    assert await job.run_once()
    old_again = await _hold(database, "old", 1)
    recent_again = await _hold(database, "recent", 1)

    assert old_again == Account(1, 97, 3), "a swept key is new again: its call runs once more"
    assert recent_again == Account(1, 98, 2), "a kept key still replays its first result"


def _claims(*pairs: tuple[str, str]) -> list[KeyClaim]:
    """(key, what the call asked) -> a claim answering `answer-<key>`."""
    return [
        KeyClaim(key, fingerprint_of("Batch", {"asked": asked}), f"answer-{key}")
        for key, asked in pairs
    ]


async def _claim_batch(database: Database, claims: list[KeyClaim]) -> list[str | None]:
    return await unit_of_work(database, attempts=20).run(
        lambda r: r.idempotency.remembered_many("Batch", claims, NOW, batch=True)
    )


async def test_a_batch_claims_its_new_keys_and_replays_the_ones_taken_before(
    database: Database,
) -> None:
    first = await _claim_batch(database, _claims(("a", "1"), ("b", "2")))
    second = await _claim_batch(database, _claims(("b", "2"), ("c", "3")))

    assert first == [None, None]
    assert second == ["answer-b", None]


async def test_a_batch_reusing_a_key_with_other_parameters_names_the_entry_and_claims_nothing(
    database: Database,
) -> None:
    await _claim_batch(database, _claims(("a", "1")))

    with pytest.raises(IdempotencyKeyReused) as refused:
        await _claim_batch(database, _claims(("fresh", "0"), ("a", "other")))
    after = await _claim_batch(database, _claims(("fresh", "0")))

    assert str(refused.value).startswith("requests[1]: idempotency key 'a'")
    assert refused.value.details.metadata == {"idempotency_key": "a", "index": "1"}
    assert after == [None]  # the refused batch left no claim behind


async def test_concurrent_batches_sharing_keys_claim_each_key_once(database: Database) -> None:
    batches = [_claims(("x", "1"), ("y", "2")) for _ in range(10)]

    answers = await asyncio.gather(*(_claim_batch(database, batch) for batch in batches))

    assert answers.count([None, None]) == 1
    assert answers.count(["answer-x", "answer-y"]) == 9
