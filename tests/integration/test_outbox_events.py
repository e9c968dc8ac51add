"""The outboxes of credits and mining on both engines: every change users shows writes its event
in the change's own transaction (a refused change writes none), and the relay publishes them to
Redis in order, marks them sent, and catches up on what was written while it was stopped."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import cast

import pytest
import redis.asyncio
from sqlalchemy import inspect

from services.core.background import PeriodicJob
from services.core.db import Database
from services.core.event_stream import StreamPublisher, redis_client
from services.core.events import Event
from services.core.migrate import downgrade, upgrade
from services.core.outbox import relay_job
from services.core.settings import Settings
from services.core.testing import FakeClock, RedisServer
from services.core.uow import UnitOfWork
from services.core.validators import new_wallet_address
from services.credits.domain import InsufficientCredits
from services.credits.repository import CreditsRepositories
from services.credits.usecases import CreditsUseCases
from services.mining.domain import NewReport
from services.mining.repository import MiningRepositories
from services.mining.usecases import MiningUseCases

STREAM = "test:events:credits"


@pytest.fixture
async def credits_uow(settings: Settings) -> AsyncIterator[UnitOfWork[CreditsRepositories]]:
    database = Database.from_settings(settings, "credits")
    try:
        await upgrade(database, "credits")
        yield UnitOfWork(database, CreditsRepositories.on)
    finally:
        await database.dispose()


@pytest.fixture
async def redis_stream(redis_server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis_client(redis_server.url, 2.0)
    await client.delete(STREAM)
    yield client
    await client.aclose()


async def unsent(uow: UnitOfWork[CreditsRepositories]) -> list[Event]:
    return await uow.run(lambda r: r.outbox.unsent(100))


async def test_every_change_of_a_balance_writes_its_event_with_the_balance_after_it(
    credits_uow: UnitOfWork[CreditsRepositories], clock: FakeClock
) -> None:
    credits = CreditsUseCases(credits_uow, clock)
    wallet = new_wallet_address()

    await credits.grant(wallet, 10, "granted", "g")
    hold = await credits.reserve(wallet, 4, 60, "held", "r")
    await credits.confirm(hold.reservation.reservation_id, 3, "c")
    await credits.deduct(wallet, 2, "spent", "d")
    await credits.grant(wallet, 10, "granted", "g")  # a replay: nothing changes

    events = await unsent(credits_uow)
    shown = [(e.payload["available"], e.payload["reserved"]) for e in events]
    # The account is created empty, then each move leaves its figures.
    assert shown == [(0, 0), (10, 0), (6, 4), (7, 0), (5, 0)]
    assert {e.key for e in events} == {wallet}
    sequences = [e.sequence for e in events]
    assert sequences == sorted(sequences)
    assert len(set(sequences)) == len(sequences)


async def test_a_refused_move_writes_no_event_and_an_expiry_by_the_sweeper_writes_one(
    credits_uow: UnitOfWork[CreditsRepositories], clock: FakeClock
) -> None:
    credits = CreditsUseCases(credits_uow, clock)
    wallet = new_wallet_address()
    await credits.grant(wallet, 5, "granted", "g")
    await credits.reserve(wallet, 5, 1, "held", "r")
    before = await unsent(credits_uow)

    with pytest.raises(InsufficientCredits):
        await credits.deduct(wallet, 1, "too much", "d")
    refused = await unsent(credits_uow)
    clock.advance(seconds=2)
    assert await credits.expire_due() == 1
    swept = await unsent(credits_uow)

    assert refused == before
    assert [(e.payload["available"], e.payload["reserved"]) for e in swept[len(before) :]] == [
        (5, 0)
    ]


async def test_a_new_miner_and_a_newer_report_write_events_and_an_older_report_none(
    settings: Settings, clock: FakeClock
) -> None:
    database = Database.from_settings(settings, "mining")
    try:
        await upgrade(database, "mining")
        uow = UnitOfWork(database, MiningRepositories.on)
        mining = MiningUseCases(uow, clock)
        wallet = new_wallet_address()
        first, newer, older = clock.now, clock.now + timedelta(minutes=5), clock.now
        for key, observed in (("a", first), ("b", newer), ("c", older)):
            await mining.record_stats(NewReport(wallet, 1.0, 1, observed, key))

        events = await uow.run(lambda r: r.outbox.unsent(100))
    finally:
        await database.dispose()

    assert [e.key for e in events] == [wallet, wallet]
    times = [str(e.payload["last_report_time"]) for e in events]
    assert [t[:19].replace("T", " ") for t in times] == [
        first.strftime("%Y-%m-%d %H:%M:%S"),
        newer.strftime("%Y-%m-%d %H:%M:%S"),
    ]


async def stream_events(client: redis.asyncio.Redis) -> list[Event]:
    entries = cast("list[tuple[str, dict[str, str]]]", await client.xrange(STREAM))
    return [Event.decoded(fields) for _, fields in entries]


def relay_of(
    uow: UnitOfWork[CreditsRepositories], client: redis.asyncio.Redis, clock: FakeClock
) -> PeriodicJob:
    publisher = StreamPublisher(client, STREAM, max_length=10_000)
    return relay_job(uow, lambda r: r.outbox, publisher, clock, interval_seconds=60, batch=2)


async def test_the_relay_publishes_events_in_order_once_and_marks_them_sent(
    credits_uow: UnitOfWork[CreditsRepositories],
    clock: FakeClock,
    redis_stream: redis.asyncio.Redis,
) -> None:
    credits = CreditsUseCases(credits_uow, clock)
    wallets = [new_wallet_address() for _ in range(3)]
    for number, wallet in enumerate(wallets):
        await credits.grant(wallet, number + 1, "granted", f"g{number}")
    written = await unsent(credits_uow)
    relay = relay_of(credits_uow, redis_stream, clock)

    assert await relay.run_once()
    assert await relay.run_once()

    assert await stream_events(redis_stream) == written
    assert await unsent(credits_uow) == []


async def test_a_relay_that_was_down_catches_up_from_the_outbox(
    credits_uow: UnitOfWork[CreditsRepositories],
    clock: FakeClock,
    redis_stream: redis.asyncio.Redis,
) -> None:
    credits = CreditsUseCases(credits_uow, clock)
    wallet = new_wallet_address()
    await credits.grant(wallet, 1, "granted", "g1")
    relay = relay_of(credits_uow, redis_stream, clock)
    await relay.run_once()
    relayed = len(await stream_events(redis_stream))

    # Written while no relay runs (the process was down): the outbox keeps them.
    for number in range(2, 5):
        await credits.grant(wallet, 1, "granted", f"g{number}")
    assert len(await stream_events(redis_stream)) == relayed
    await relay.run_once()

    published = await stream_events(redis_stream)
    assert [e.payload["available"] for e in published[relayed:]] == [2, 3, 4]
    assert await unsent(credits_uow) == []


class Failing:
    async def publish(self, events: Sequence[Event]) -> None:
        raise ConnectionError("redis is down")


async def test_a_publish_that_fails_leaves_the_events_unsent(
    credits_uow: UnitOfWork[CreditsRepositories], clock: FakeClock
) -> None:
    await CreditsUseCases(credits_uow, clock).grant(new_wallet_address(), 1, "granted", "g")
    written = await unsent(credits_uow)
    relay = relay_job(credits_uow, lambda r: r.outbox, Failing(), clock, interval_seconds=60)

    assert await relay.run_once() is False
    assert relay.healthy is False
    assert await unsent(credits_uow) == written


async def test_sent_events_are_pruned_after_the_retention_and_unsent_ones_never(
    credits_uow: UnitOfWork[CreditsRepositories],
    clock: FakeClock,
    redis_stream: redis.asyncio.Redis,
) -> None:
    credits = CreditsUseCases(credits_uow, clock)
    wallet = new_wallet_address()
    await credits.grant(wallet, 1, "granted", "g1")
    await relay_of(credits_uow, redis_stream, clock).run_once()
    await credits.grant(wallet, 1, "granted", "g2")
    clock.advance(hours=2)

    pruned = await credits_uow.run(lambda r: r.outbox.prune(clock() - timedelta(hours=1), 100))

    assert pruned == 2  # the new account's event and the first grant's
    assert [e.payload["available"] for e in await unsent(credits_uow)] == [2]


async def test_the_outbox_migration_undone_writes_no_event_and_redone_writes_them_again(
    settings: Settings, clock: FakeClock
) -> None:
    database = Database.from_settings(settings, "credits")
    uow = UnitOfWork(database, CreditsRepositories.on)
    credits = CreditsUseCases(uow, clock)
    try:
        await upgrade(database, "credits")
        await downgrade(database, "credits", "0002")
        async with database.engine.connect() as connection:
            tables = await connection.run_sync(
                lambda sync: inspect(sync).get_table_names(schema=database.schema)
            )
        await upgrade(database, "credits")
        wallet = new_wallet_address()
        await credits.grant(wallet, 7, "granted", "g")
        moved = await credits.reserve(wallet, 2, 60, "held", "r")
        events = await unsent(uow)
    finally:
        await database.dispose()

    assert "outbox" not in tables
    assert (moved.balance.available, moved.balance.reserved) == (5, 2)
    assert {e.key for e in events} == {wallet}
    assert [(e.payload["available"], e.payload["reserved"]) for e in events] == [
        (0, 0),
        (7, 0),
        (5, 2),
    ]
