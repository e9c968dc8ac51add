"""The in-memory fakes of tests/fakes answer as the real repositories do: the same steps, each
one unit of work, run on a fake and on real storage (SQLite and PostgreSQL) give the same
domain objects and the same refusals. So the unit tests' fast tier stays honest."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from services.apikeys.domain import APIKey, Challenge
from services.apikeys.repository import APIKeysRepositories
from services.core.db import Database
from services.core.errors import R3mesError
from services.core.idempotency import KeyClaim
from services.core.migrate import upgrade
from services.core.pagination import PageRequest
from services.core.settings import ServiceName, Settings
from services.core.uow import UnitOfWork
from services.credits.domain import Account, LedgerEntryKind, Reservation, ReservationState
from services.credits.repository import CreditsRepositories
from services.mining.domain import Block, DayRollup, MinerTotals, StatsReport
from services.mining.repository import MiningRepositories
from services.users.domain import User
from services.users.repository import UsersRepositories
from tests.fakes.apikeys import apikeys_unit_of_work
from tests.fakes.credits import credits_unit_of_work
from tests.fakes.mining import mining_unit_of_work
from tests.fakes.users import users_unit_of_work

RepositoriesT = TypeVar("RepositoriesT")
Step = Callable[[RepositoriesT], Awaitable[object]]

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(seconds=30)
WALLET, OTHER = "remes1alice", "remes1bob"


@asynccontextmanager
async def stored(
    settings: Settings,
    service: ServiceName,
    repositories: Callable[[AsyncConnection], RepositoriesT],
) -> AsyncIterator[UnitOfWork[RepositoriesT]]:
    """The service's real unit of work on the test's own storage, migrated to head."""
    database = Database.from_settings(settings, service)
    try:
        await upgrade(database, service)
        yield UnitOfWork(database, repositories)
    finally:
        await database.dispose()


async def outcomes(
    uow: UnitOfWork[RepositoriesT], steps: Sequence[Step[RepositoriesT]]
) -> list[object]:
    """What each step answered, or the reason it was refused (its unit rolled back)."""
    answers: list[object] = []
    for step in steps:
        try:
            answers.append(await uow.run(step))
        except R3mesError as refusal:
            answers.append(refusal.reason)
    return answers


def hold(reservation_id: str, amount: int, seconds: int) -> Reservation:
    return Reservation(
        reservation_id,
        WALLET,
        amount,
        0,
        ReservationState.HELD,
        "",
        NOW,
        NOW + timedelta(seconds=seconds),
    )


CREDITS_STEPS: list[Step[CreditsRepositories]] = [
    lambda r: r.accounts.add(WALLET, 10, NOW),
    lambda r: r.accounts.add(WALLET, 10**18, NOW),  # past the limit: None
    lambda r: r.accounts.hold(WALLET, 4, NOW),
    lambda r: r.accounts.hold(WALLET, 7, NOW),  # more than available: None
    lambda r: r.accounts.take(WALLET, 1, NOW),
    lambda r: r.accounts.take(OTHER, 1, NOW),  # no account: None
    lambda r: r.reservations.add(hold("r1", 3, 60)),
    lambda r: r.reservations.add(hold("r2", 1, 10)),
    lambda r: r.reservations.add(hold("r1", 3, 60)),  # the same id: refused
    lambda r: r.reservations.confirm("r1", 5, NOW),  # more than held: None
    lambda r: r.reservations.confirm("r1", 2, NOW),
    lambda r: r.reservations.confirm("r1", None, NOW),  # resolved already: None
    lambda r: r.reservations.roll_back("r2", LATER),  # expired: None
    lambda r: r.accounts.balance(WALLET, LATER),
    lambda r: r.accounts.balance(OTHER, LATER),
    lambda r: r.accounts.network_total(LATER),
    lambda r: r.reservations.due_for_expiry(LATER, 10),
    lambda r: r.reservations.expire_of_wallet(WALLET, LATER),
    lambda r: r.reservations.expire_these(["r2"], LATER),  # expired already: []
    lambda r: r.accounts.release(WALLET, 4, 2, LATER),
    lambda r: r.reservations.get("r2"),
    lambda r: r.reservations.get("r9"),  # none: ReservationNotFound
    lambda r: r.ledger.append(
        "e1", Account(WALLET, 7, 0, NOW), LedgerEntryKind.GRANT, 10, "grant", NOW
    ),
    lambda r: r.ledger.append(
        "e2", Account(WALLET, 5, 0, LATER), LedgerEntryKind.CAPTURE, -2, "", LATER, "r1"
    ),
    lambda r: r.ledger.of_wallet(WALLET, PageRequest(1)),
    lambda r: r.ledger.of_wallet(WALLET, PageRequest(1, (2,))),
    lambda r: r.ledger.find(entry_id="e2"),
    lambda r: r.idempotency.insert_or_ignore(
        {"scope": "S", "key": "k", "fingerprint": "f", "create_time": NOW}
    ),
    lambda r: r.idempotency.insert_or_ignore(
        {"scope": "S", "key": "k", "fingerprint": "g", "create_time": NOW}
    ),
    lambda r: r.idempotency.update_where({"scope": "S", "key": "k"}, {"response": "done"}),
    lambda r: r.idempotency.find(scope="S", key="k"),
    lambda r: r.idempotency.sweep(LATER, timedelta(seconds=10)),
]


async def test_the_credits_fake_answers_as_the_credits_tables_do(settings: Settings) -> None:
    async with stored(settings, "credits", CreditsRepositories.on) as real:
        assert await outcomes(real, CREDITS_STEPS) == await outcomes(
            credits_unit_of_work(), CREDITS_STEPS
        )


def key(key_id: str, wallet: str, minutes: int, expire_days: int | None = None) -> APIKey:
    created = NOW + timedelta(minutes=minutes)
    expires = None if expire_days is None else created + timedelta(days=expire_days)
    return APIKey(key_id, wallet, key_id, "r3mes_AbCd...WxYz", created, expires)


APIKEYS_STEPS: list[Step[APIKeysRepositories]] = [
    lambda r: r.keys.add(key("k1", WALLET, 0), "d1"),
    lambda r: r.keys.add(key("k2", WALLET, 1, expire_days=1), "d2"),
    lambda r: r.keys.add(key("k3", WALLET, 2), "d3"),
    lambda r: r.keys.add(key("k4", OTHER, 3), "d4"),
    lambda r: r.keys.add(key("k5", WALLET, 4), "d1"),  # the same digest: refused
    lambda r: r.keys.by_digest("d2"),
    lambda r: r.keys.by_digest("nope"),
    lambda r: r.keys.count_active(WALLET, NOW + timedelta(days=2)),
    lambda r: r.keys.page_of(WALLET, PageRequest(2)),
    lambda r: r.keys.page_of(WALLET, PageRequest(2, (NOW + timedelta(minutes=1), "k2"))),
    lambda r: r.keys.revoke(WALLET, "k1", NOW),
    lambda r: r.keys.revoke(WALLET, "k1", LATER),  # the first revoke time is kept
    lambda r: r.keys.revoke(WALLET, "k4", NOW),  # another wallet's: refused
    lambda r: r.keys.record_uses({"k3": LATER}),
    lambda r: r.keys.record_uses({"k3": NOW}),  # never moved back
    lambda r: r.keys.get(WALLET, "k3"),
    lambda r: r.keys.remove(WALLET, "k3"),
    lambda r: r.keys.remove(WALLET, "k3"),
    lambda r: r.challenges.add(Challenge("c1", WALLET, "sign", NOW, NOW + timedelta(minutes=5))),
    lambda r: r.challenges.mark_used("c1"),
    lambda r: r.challenges.mark_used("c1"),
    lambda r: r.challenges.locked("c1"),
    lambda r: r.challenges.sweep_expired(NOW + timedelta(minutes=5)),
    lambda r: r.challenges.sweep_expired(NOW + timedelta(minutes=6)),
]


async def test_the_apikeys_fake_answers_as_the_apikeys_tables_do(settings: Settings) -> None:
    async with stored(settings, "apikeys", APIKeysRepositories.on) as real:
        assert await outcomes(real, APIKEYS_STEPS) == await outcomes(
            apikeys_unit_of_work(), APIKEYS_STEPS
        )


DAY = date(2026, 1, 15)


def report(hashrate: float, earned: int, minutes: int) -> StatsReport:
    return StatsReport(WALLET, hashrate, earned, NOW - timedelta(minutes=minutes), NOW)


def totals(first: int, last: int, hashrate: float, earned: int, count: int) -> MinerTotals:
    return MinerTotals(
        WALLET,
        NOW - timedelta(minutes=first),
        NOW - timedelta(minutes=last),
        hashrate,
        earned,
        count,
    )


MINING_STEPS: list[Step[MiningRepositories]] = [
    lambda r: r.reports.add_many([report(1.0, 1, 30), report(2.0, 2, 20), report(3.0, 3, 1)]),
    lambda r: r.reports.prune(NOW - timedelta(minutes=10), 1),
    lambda r: r.reports.prune(NOW - timedelta(minutes=10), 5),
    lambda r: r.rollups.add_many([DayRollup(WALLET, DAY, 2, 5, 3.0, 2.0)]),
    lambda r: r.rollups.add_many(
        [
            DayRollup(WALLET, DAY, 1, 1, 4.0, 4.0),
            DayRollup(WALLET, DAY - timedelta(days=3), 1, 7, 1.0, 1.0),
        ]
    ),
    lambda r: r.rollups.between(WALLET, DAY - timedelta(days=1), DAY),
    lambda r: r.rollups.between(WALLET, DAY - timedelta(days=5), DAY),
    lambda r: r.miners.add_many([totals(30, 5, 2.5, 10, 2)]),
    lambda r: r.miners.add_many([totals(40, 20, 9.0, 1, 1)]),  # older: the last hashrate stays
    lambda r: r.miners.add_many([totals(3, 2, 4.0, 1, 1)]),  # newer: it replaces it
    lambda r: r.miners.get(WALLET),
    lambda r: r.miners.get(OTHER),  # never reported: MinerNotFound
    lambda r: r.miners.active_since(NOW - timedelta(minutes=3)),
    lambda r: r.miners.hashrate_since(NOW - timedelta(minutes=3)),
    lambda r: r.miners.hashrate_since(NOW),
    lambda r: r.miners.count(),
    lambda r: r.blocks.add(Block(5, "ab", WALLET, 1, NOW, NOW)),
    lambda r: r.blocks.add(Block(7, "cd", OTHER, 1, LATER, NOW)),
    lambda r: r.blocks.add(Block(5, "ef", OTHER, 1, NOW, NOW)),  # recorded height: refused
    lambda r: r.blocks.highest(),
    lambda r: r.blocks.find(height=7),
    lambda r: r.blocks.find(height=6),  # none
    lambda r: r.miners.with_blocks_found(WALLET),
    lambda r: r.miners.with_blocks_found(OTHER),  # never reported: none
    lambda r: r.blocks.listed(None, PageRequest(1)),
    lambda r: r.blocks.listed(None, PageRequest(1, (7,))),
    lambda r: r.blocks.listed(OTHER, PageRequest(5)),
    lambda r: r.idempotency.remembered_many(
        "S", [KeyClaim("a", "f", "1"), KeyClaim("b", "f", "2")], NOW, batch=True
    ),
    lambda r: r.idempotency.remembered_many(
        "S", [KeyClaim("b", "f", "3"), KeyClaim("c", "f", "4")], LATER, batch=True
    ),
    lambda r: r.idempotency.remembered_many(  # b reused with other parameters: refused
        "S", [KeyClaim("d", "f", "5"), KeyClaim("b", "g", "6")], LATER, batch=False
    ),
    lambda r: r.idempotency.find(scope="S", key="c"),
    lambda r: r.idempotency.find(scope="S", key="d"),  # refused with its batch: not kept
    lambda r: r.miners.add_many([totals(1, 1, 1.0, 10**18 - 12, 1)]),  # at the limit
    lambda r: r.miners.first_past_earnings_limit([OTHER, WALLET]),
    lambda r: r.miners.add_many([totals(1, 1, 1.0, 1, 1)]),  # past it
    lambda r: r.miners.first_past_earnings_limit([OTHER, WALLET]),
]


async def test_the_mining_fake_answers_as_the_mining_tables_do(settings: Settings) -> None:
    async with stored(settings, "mining", MiningRepositories.on) as real:
        assert await outcomes(real, MINING_STEPS) == await outcomes(
            mining_unit_of_work(), MINING_STEPS
        )


USERS_STEPS: list[Step[UsersRepositories]] = [
    lambda r: r.users.add(User(WALLET, NOW)),
    lambda r: r.users.add(User(WALLET, LATER)),  # registered already: refused
    lambda r: r.users.add(User(OTHER, LATER)),
    lambda r: r.users.get(WALLET),
    lambda r: r.users.get("remes1nobody"),
    lambda r: r.users.count(),
]


async def test_the_users_fake_answers_as_the_users_table_does(settings: Settings) -> None:
    async with stored(settings, "users", UsersRepositories.on) as real:
        assert await outcomes(real, USERS_STEPS) == await outcomes(
            users_unit_of_work(), USERS_STEPS
        )
