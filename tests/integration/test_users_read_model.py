"""users' read model with Redis, in the split topology and in one process on PostgreSQL
(docs/architecture.md, "users' read model"): GetUser answers from the balances and mining
statuses that credits' and mining's events keep, a change shows within the staleness bound, a
wallet never seen is asked of its peers once and kept, a peer that fails for such a wallet
costs only its fields, and events delivered again or late never move a balance back."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio
from r3mes.users.v1 import users_pb2

from services.core.db import Database
from services.core.errors import Unavailable
from services.core.event_stream import StreamConsumer, redis_client
from services.core.events import Event
from services.core.migrate import upgrade
from services.core.settings import Settings
from services.core.testing import FakeClock, RedisServer, new_wallet_address
from services.core.uow import UnitOfWork
from services.credits.usecases import CreditsUseCases
from services.mining.usecases import MiningUseCases
from services.users.domain import Balance, MiningStatus, User
from services.users.repository import UsersRepositories
from services.users.settings import UsersSettings
from services.users.usecases import ReadModel
from tests.integration.test_topologies import grant, mine
from tests.integration.topologies import Suite, running_suite

STALENESS_SECONDS = UsersSettings().users_read_model_staleness_seconds
STARTUP_SECONDS = 30.0  # the consumer's first read after the servers start


async def down(*_: object) -> None:
    raise Unavailable("the storage is down")


async def shown(suite: Suite, wallet: str) -> users_pb2.User:
    return (await suite.users.GetUser(users_pb2.GetUserRequest(wallet_address=wallet))).user


async def new_user(suite: Suite) -> str:
    wallet = new_wallet_address()
    await suite.users.CreateUser(users_pb2.CreateUserRequest(wallet_address=wallet))
    return wallet


async def shows_within(
    suite: Suite, wallet: str, seconds: float, wanted: Callable[[users_pb2.User], bool]
) -> bool:
    """Asks GetUser until its answer is as wanted; False if `seconds` passed first."""
    deadline = time.monotonic() + seconds
    while not wanted(await shown(suite, wallet)):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def available(amount: int) -> Callable[[users_pb2.User], bool]:
    return lambda user: (
        user.HasField("available_micro_credits") and (user.available_micro_credits == amount)
    )


def with_redis(settings: Settings, redis_server: RedisServer) -> Settings:
    return settings.model_copy(
        update={
            "redis_url": redis_server.url,
            "events_stream_prefix": f"t{uuid.uuid4().hex}:",
            # The tests ask GetUser in loops, far past a client's allowance of reads.
            "ratelimit_backend": "off",
        }
    )


@pytest.fixture
async def suite(
    settings: Settings, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Suite]:
    """Every service in its own server, with Redis; returned once users reads its model: a
    grant shows in GetUser while credits cannot answer a balance (only its events can tell)."""
    async with running_suite(with_redis(settings, redis_server), "split", FakeClock()) as running:
        with monkeypatch.context() as patch:
            patch.setattr(CreditsUseCases, "balance", down)
            wallet = await new_user(running)
            await grant(running, wallet, 1)
            assert await shows_within(running, wallet, STARTUP_SECONDS, available(1))
        yield running


async def test_a_grant_shows_in_get_user_within_the_staleness_bound_from_the_events(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    wallet = await new_user(suite)
    await grant(suite, wallet, 5)
    assert await shows_within(suite, wallet, STALENESS_SECONDS, available(5))
    # From here credits cannot answer a balance: what GetUser shows comes from its events.
    monkeypatch.setattr(CreditsUseCases, "balance", down)

    await grant(suite, wallet, 2)

    assert await shows_within(suite, wallet, STALENESS_SECONDS, available(7))


async def test_a_wallet_never_seen_is_asked_of_its_peers_once_and_kept(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    wallet = await new_user(suite)
    asked = await shown(suite, wallet)
    monkeypatch.setattr(MiningUseCases, "miner_stats", down)
    monkeypatch.setattr(CreditsUseCases, "balance", down)
    kept = await shown(suite, wallet)

    await mine(suite, wallet)

    assert (asked.available_micro_credits, asked.is_miner) == (0, False)
    assert asked.HasField("is_miner")
    assert (kept.available_micro_credits, kept.is_miner) == (0, False)
    assert kept.HasField("available_micro_credits")
    assert kept.HasField("is_miner")
    assert await shows_within(suite, wallet, STALENESS_SECONDS, lambda user: user.is_miner)


async def test_a_peer_that_fails_for_a_wallet_never_seen_costs_only_its_fields(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    wallet = await new_user(suite)
    with monkeypatch.context() as patch:
        patch.setattr(MiningUseCases, "miner_stats", down)
        failed = await shown(suite, wallet)
    recovered = await shown(suite, wallet)

    assert failed.HasField("available_micro_credits")
    assert not failed.HasField("is_miner")
    assert not failed.HasField("last_mining_time")
    assert recovered.HasField("is_miner")
    assert recovered.is_miner is False


@pytest.fixture
async def users_uow(settings: Settings) -> AsyncIterator[UnitOfWork[UsersRepositories]]:
    database = Database.from_settings(settings, "users")
    try:
        await upgrade(database, "users")
        uow = UnitOfWork(database, UsersRepositories.on)
        await uow.run(lambda r: r.users.add(User(WALLET, FakeClock().now)))
        yield uow
    finally:
        await database.dispose()


WALLET = new_wallet_address()


def balance_event(sequence: int, available: int) -> Event:
    return Event(sequence, WALLET, {"available": available, "reserved": 1})


async def known_balance(uow: UnitOfWork[UsersRepositories]) -> Balance | None:
    return (await uow.run(lambda r: r.users.profile(WALLET), read_only=True)).balance


async def test_events_delivered_again_or_late_never_move_a_balance_back(
    users_uow: UnitOfWork[UsersRepositories],
) -> None:
    model = ReadModel(users_uow, balances_stream="b", mining_stream="m")

    await model.apply("b", [balance_event(3, 30), balance_event(2, 20)], "5-0")
    newest = await known_balance(users_uow)
    await model.apply("b", [balance_event(2, 20), balance_event(3, 30)], "6-0")
    again = await known_balance(users_uow)
    await model.apply("b", [balance_event(4, 40)], "7-0")

    assert newest == again == Balance(30, 1)
    assert await known_balance(users_uow) == Balance(40, 1)
    assert await model.position("b") == "7-0"
    assert await model.position("m") is None


async def test_a_peers_answer_fills_only_what_no_event_told(
    users_uow: UnitOfWork[UsersRepositories],
) -> None:
    model = ReadModel(users_uow, balances_stream="b", mining_stream="m")
    await users_uow.run(lambda r: r.mining_statuses.seed(WALLET, MiningStatus(False)))
    await model.apply("b", [balance_event(1, 10)], "1-0")

    await users_uow.run(lambda r: r.balances.seed(WALLET, Balance(99, 0)))
    seeded = await users_uow.run(lambda r: r.users.profile(WALLET), read_only=True)
    await model.apply("m", [Event(1, WALLET, {"last_report_time": "2026-01-15 12:00:00"})], "1-0")
    mined = await users_uow.run(lambda r: r.users.profile(WALLET), read_only=True)

    assert seeded.balance == Balance(10, 1)
    assert seeded.mining == MiningStatus(False)
    assert mined.mining is not None
    assert mined.mining.is_miner is True
    assert mined.mining.last_mining_time == FakeClock().now.replace(hour=12, minute=0)


def entry(event: Event) -> dict[Any, Any]:
    return dict(event.encoded())


async def test_a_consumer_whose_stream_lost_entries_forgets_that_stream_and_reads_on(
    users_uow: UnitOfWork[UsersRepositories], redis_server: RedisServer
) -> None:
    stream = f"t{uuid.uuid4().hex}:credits"
    model = ReadModel(users_uow, balances_stream=stream, mining_stream="m")
    await model.apply(stream, [balance_event(1, 10)], "1-0")
    client: redis.asyncio.Redis = redis_client(redis_server.url, 2.0)
    try:
        # The stream as Redis has it after losing entries 1-0 onward (restarted, or trimmed).
        await client.xadd(stream, entry(balance_event(5, 50)), id="9-0")
        consumer = StreamConsumer(client, [stream], model, block_seconds=0.01)
        await consumer.run_once()
        forgotten = await known_balance(users_uow)
        await client.xadd(stream, entry(balance_event(6, 60)), id="10-0")
        await consumer.run_once()
    finally:
        await client.aclose()

    assert forgotten is None  # GetUser asks credits for it again
    assert await known_balance(users_uow) == Balance(60, 1)
    assert await model.position(stream) == "10-0"


async def test_in_one_process_with_redis_get_user_reads_the_model_only_on_postgresql(
    settings: Settings, engine: str, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On PostgreSQL each co-hosted answer is still a statement of its own; on SQLite asking is
    # cheaper than the model (users_read_model=auto).
    one_process = running_suite(with_redis(settings, redis_server), "one-process", FakeClock())
    async with one_process as suite:
        wallet = await new_user(suite)
        await grant(suite, wallet, 3)
        monkeypatch.setattr(CreditsUseCases, "balance", down)
        on_postgresql = engine == "postgres"
        # Only the events can tell the balance now; on SQLite nothing reads them.
        seconds = STARTUP_SECONDS if on_postgresql else 2 * STALENESS_SECONDS
        shows = await shows_within(suite, wallet, seconds, available(3))

    assert shows == on_postgresql
