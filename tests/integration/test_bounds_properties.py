"""No sequence of accepted writes can make a read fail, on SQLite and PostgreSQL, through real
servers: random starting states and random writes (some refused, cleanly), then every read
answers, with figures that are exact, or saturated and flagged where an int64 cannot hold them.

Starting states are written straight to storage: wallets at or near the limits are reachable by
accepted writes, but only through thousands of calls per example."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import timedelta
from itertools import count
from typing import TypeVar

import grpc
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from r3mes.credits.v1 import credits_pb2
from r3mes.mining.v1 import mining_pb2
from sqlalchemy import MetaData

from services.core.db import Database
from services.core.settings import ServiceName, Settings
from services.core.testing import FakeClock, new_wallet_address
from services.credits import tables as credits_tables
from services.credits.domain import BALANCE_LIMIT, INT64_MAX
from services.mining import tables as mining_tables
from services.mining.domain import EARNINGS_LIMIT, MAX_HASHRATE
from tests.integration.credits_support import (
    INTERNAL,
    Credits,
    check_invariants,
    running_credits,
    seed_grants,
)
from tests.integration.mining_support import Mining, running_mining, seed_earnings, stats

T = TypeVar("T")
MAX_AMOUNT = 10**15  # the most one request may move or report, per the protos' field rules
# Writes may be refused, with these codes only; anything else (INTERNAL above all) is a bug.
REFUSED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.NOT_FOUND,
}
# Each example runs on the fixture's one server, whose tables are emptied first.
PROPERTY = settings(
    max_examples=10,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
_keys = count()


async def attempt(call: Awaitable[T]) -> T | None:
    """The call's answer, or None when it was refused as a caller's mistake may be."""
    try:
        return await call
    except grpc.aio.AioRpcError as error:
        if error.code() not in REFUSED:
            raise
        return None


async def emptied(settings: Settings, service: ServiceName, metadata: MetaData) -> None:
    database = Database.from_settings(settings, service)
    try:
        async with database.transaction() as connection:
            for table in reversed(metadata.sorted_tables):
                await connection.execute(table.delete())
    finally:
        await database.dispose()


def finite(value: float) -> bool:
    return math.isfinite(value) and value >= 0


amounts = st.one_of(st.just(MAX_AMOUNT), st.integers(1, MAX_AMOUNT))


@dataclass(frozen=True)
class CreditWrite:
    kind: str  # grant, deduct, reserve, confirm, roll_back or wait
    target: int  # a wallet's index, or a hold's
    amount: int
    whole: bool  # a confirm takes the whole hold
    seconds: int  # a reserve's ttl, or how long to wait


credit_writes = st.builds(
    CreditWrite,
    kind=st.sampled_from(["grant", "deduct", "reserve", "confirm", "roll_back", "wait"]),
    target=st.integers(0, 20),
    amount=amounts,
    whole=st.booleans(),
    seconds=st.integers(0, 600),
)
balances = st.one_of(
    st.just(BALANCE_LIMIT),
    st.integers(BALANCE_LIMIT - MAX_AMOUNT, BALANCE_LIMIT),
    st.integers(1, BALANCE_LIMIT),
)


@pytest.fixture
def unlimited(settings: Settings) -> Settings:
    """Without rate limits: an example makes more calls a minute than an address may."""
    return settings.model_copy(update={"ratelimit_backend": "off"})


@pytest.fixture
async def credits(unlimited: Settings) -> AsyncIterator[Credits]:
    async with running_credits(unlimited) as running:
        yield running


async def apply_credit_write(
    credits: Credits, wallets: list[str], holds: list[str], write: CreditWrite
) -> None:
    wallet = wallets[write.target % len(wallets)]
    if write.kind == "grant":
        await attempt(credits.grant(wallet, write.amount))
    elif write.kind == "deduct":
        await attempt(credits.deduct(wallet, write.amount))
    elif write.kind == "reserve":
        held = await attempt(credits.reserve(wallet, write.amount, ttl_seconds=write.seconds))
        if held is not None:
            holds.append(held.reservation.reservation_id)
    elif write.kind == "wait":
        credits.clock.advance(seconds=write.seconds)
    elif holds:
        hold = holds[write.target % len(holds)]
        if write.kind == "confirm":
            await attempt(credits.confirm(hold, None if write.whole else write.amount))
        else:
            await attempt(credits.roll_back(hold))


@PROPERTY
@given(
    starts=st.lists(balances, min_size=1, max_size=12), writes=st.lists(credit_writes, max_size=20)
)
# Always tried: ten wallets at the limit, one holding credits that expire unswept.
@example(
    starts=[BALANCE_LIMIT] * 10,
    writes=[CreditWrite("reserve", 0, MAX_AMOUNT, False, 60), CreditWrite("wait", 0, 0, False, 90)],
)
async def test_no_credit_writes_make_a_credits_read_fail(
    credits: Credits, starts: list[int], writes: list[CreditWrite]
) -> None:
    await emptied(credits.settings, "credits", credits_tables.metadata)
    wallets = [new_wallet_address() for _ in starts]
    await seed_grants(credits.settings, credits.clock(), dict(zip(wallets, starts, strict=True)))
    holds: list[str] = []
    for write in writes:
        await apply_credit_write(credits, wallets, holds, write)

    balances = [await credits.balance(wallet) for wallet in wallets]
    for wallet in wallets:
        await credits.stub.ListLedgerEntries(
            credits_pb2.ListLedgerEntriesRequest(wallet_address=wallet), metadata=INTERNAL
        )
    total = await credits.stub.GetCreditsTotal(credits_pb2.GetCreditsTotalRequest())

    available = sum(balance.available_micro_credits for balance in balances)
    reserved = sum(balance.reserved_micro_credits for balance in balances)
    assert all(balance.total_micro_credits <= BALANCE_LIMIT for balance in balances)
    assert total.available_micro_credits == min(available, INT64_MAX)
    assert total.reserved_micro_credits == min(reserved, INT64_MAX)
    assert total.total_micro_credits == min(available + reserved, INT64_MAX)
    assert total.saturated == (available + reserved > INT64_MAX)
    await check_invariants(credits.settings, credits.stub, credits.clock())


@dataclass(frozen=True)
class Report:
    wallet: int
    hashrate: float
    earned: int
    minutes_ago: int


reports = st.builds(
    Report,
    wallet=st.integers(0, 3),
    # Mostly within the bound; unbounded floats (NaN, infinities, 1.7e308, negatives) are refused.
    hashrate=st.one_of(st.just(MAX_HASHRATE), st.floats(0, MAX_HASHRATE), st.floats()),
    earned=st.one_of(st.just(MAX_AMOUNT), st.integers(0, MAX_AMOUNT)),
    minutes_ago=st.integers(0, 3 * 24 * 60),
)
earnings = st.one_of(
    st.just(EARNINGS_LIMIT),
    st.integers(EARNINGS_LIMIT - 3 * MAX_AMOUNT, EARNINGS_LIMIT),
    st.integers(0, EARNINGS_LIMIT),
)


@pytest.fixture
async def mining(unlimited: Settings) -> AsyncIterator[Mining]:
    async with running_mining(unlimited, FakeClock()) as running:
        yield running


@PROPERTY
@given(
    starts=st.lists(earnings, min_size=1, max_size=4),
    batches=st.lists(st.lists(reports, min_size=1, max_size=5), max_size=6),
)
# Always tried: a miner at the limit earning once more; two miners reporting 1.7e308 each.
@example(starts=[EARNINGS_LIMIT, 0], batches=[[Report(0, 1.0, 1, 0)], [Report(1, 1.7e308, 0, 0)]])
@example(starts=[0, 0], batches=[[Report(0, 1.7e308, 0, 0)], [Report(1, 1.7e308, 0, 0)]])
async def test_no_mining_reports_make_a_mining_read_fail(
    mining: Mining, starts: list[int], batches: list[list[Report]]
) -> None:
    await emptied(mining.settings, "mining", mining_tables.metadata)
    wallets = [new_wallet_address() for _ in starts]
    await seed_earnings(mining, dict(zip(wallets, starts, strict=True)))
    earned = dict(zip(wallets, starts, strict=True))
    for batch in batches:
        entries = [
            (
                wallets[report.wallet % len(wallets)],
                report,
                stats(
                    wallets[report.wallet % len(wallets)],
                    f"p-{next(_keys)}",
                    hashrate=report.hashrate,
                    earned=report.earned,
                    observe_time=mining.clock() - timedelta(minutes=report.minutes_ago),
                ),
            )
            for report in batch
        ]
        request = mining_pb2.BatchRecordMiningStatsRequest(requests=[e[2] for e in entries])
        if await attempt(mining.stub.BatchRecordMiningStats(request, metadata=INTERNAL)):
            for wallet, report, _ in entries:
                earned[wallet] += report.earned

    summary = await mining.stub.GetNetworkSummary(mining_pb2.GetNetworkSummaryRequest())
    assert finite(summary.network_hashrate)
    for wallet in wallets:
        miner = await mining.stub.GetMinerStats(
            mining_pb2.GetMinerStatsRequest(wallet_address=wallet)
        )
        history = await mining.stub.GetEarningsHistory(
            mining_pb2.GetEarningsHistoryRequest(wallet_address=wallet, days=365)
        )
        hashrates = await mining.stub.GetHashrateHistory(
            mining_pb2.GetHashrateHistoryRequest(wallet_address=wallet, days=365)
        )
        assert miner.stats.total_earned_micro_credits == earned[wallet] <= EARNINGS_LIMIT
        assert history.total_earned_micro_credits == earned[wallet]
        assert finite(miner.stats.current_hashrate)
        assert all(
            finite(point.average_hashrate) and finite(point.peak_hashrate)
            for point in hashrates.points
        )
