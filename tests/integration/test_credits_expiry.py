"""Holds nobody resolves expire: reads release them at once, the sweeper records it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from r3mes.credits.v1 import credits_pb2

from services.core.settings import Settings
from services.core.testing import FakeClock, new_wallet_address
from tests.integration.credits_support import (
    CREDIT,
    Credits,
    assert_invariants,
    running_credits,
    stored_rows,
)
from tests.integration.rpc import failure_of

EXPIRED = credits_pb2.RESERVATION_STATE_EXPIRED


async def expired_hold(credits: Credits, wallet: str, amount: int = 4 * CREDIT) -> str:
    """A wallet holding 10 credits with a hold of `amount` that has just expired, unswept."""
    await credits.grant(wallet, 10 * CREDIT)
    hold = await credits.reserve(wallet, amount, ttl_seconds=60)
    credits.clock.advance(seconds=60)
    return str(hold.reservation.reservation_id)


async def test_an_expired_hold_is_available_again_before_any_sweep(credits: Credits) -> None:
    wallet = new_wallet_address()
    await expired_hold(credits, wallet)

    balance = await credits.balance(wallet)
    total = await credits.stub.GetCreditsTotal(credits_pb2.GetCreditsTotalRequest())

    assert (balance.available_micro_credits, balance.reserved_micro_credits) == (10 * CREDIT, 0)
    assert (total.available_micro_credits, total.reserved_micro_credits) == (10 * CREDIT, 0)
    assert [row.state for row in (await stored_rows(credits.settings))["reservations"]] == ["HELD"]


async def test_a_hold_is_live_until_the_last_moment_before_its_expire_time(
    credits: Credits,
) -> None:
    wallet = new_wallet_address()
    await credits.grant(wallet, 10 * CREDIT)
    hold = await credits.reserve(wallet, 4 * CREDIT, ttl_seconds=60)
    credits.clock.advance(seconds=59.999)

    confirmed = await credits.confirm(hold.reservation.reservation_id)

    assert confirmed.reservation.state == credits_pb2.RESERVATION_STATE_CONFIRMED


async def test_confirming_an_expired_hold_is_refused_as_expired(credits: Credits) -> None:
    wallet = new_wallet_address()
    reservation_id = await expired_hold(credits, wallet)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await credits.confirm(reservation_id)

    failure = failure_of(raised.value)
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "RESERVATION_EXPIRED",
    )
    assert (await credits.balance(wallet)).available_micro_credits == 10 * CREDIT


async def test_rolling_back_an_expired_hold_returns_it_expired_and_releases_it(
    credits: Credits,
) -> None:
    wallet = new_wallet_address()
    reservation_id = await expired_hold(credits, wallet)
    expire_time = credits.clock()
    credits.clock.advance(seconds=5)

    rolled_back = await credits.roll_back(reservation_id)

    assert rolled_back.reservation.state == EXPIRED
    assert rolled_back.reservation.close_time.ToDatetime(UTC) == expire_time
    assert rolled_back.balance.available_micro_credits == 10 * CREDIT
    assert [row.state for row in (await stored_rows(credits.settings))["reservations"]] == [
        "EXPIRED"
    ]


async def test_a_reserve_may_spend_credits_of_a_hold_that_expired_unswept(credits: Credits) -> None:
    wallet = new_wallet_address()
    old = await expired_hold(credits, wallet, amount=8 * CREDIT)

    new = await credits.reserve(wallet, 9 * CREDIT)
    deducted = await credits.deduct(wallet, CREDIT)

    assert new.balance.reserved_micro_credits == 9 * CREDIT
    assert deducted.balance.available_micro_credits == 0
    states = {
        r.reservation_id: r.state for r in (await stored_rows(credits.settings))["reservations"]
    }
    assert states[old] == "EXPIRED"


async def test_a_repeated_reserve_reports_its_hold_expired_once_past_its_time(
    credits: Credits,
) -> None:
    wallet = new_wallet_address()
    await credits.grant(wallet, 10 * CREDIT)
    await credits.reserve(wallet, CREDIT, ttl_seconds=60, key="reserve-expiring")
    credits.clock.advance(minutes=2)

    again = await credits.reserve(wallet, CREDIT, ttl_seconds=60, key="reserve-expiring")

    assert again.reservation.state == EXPIRED


async def test_the_sweeper_marks_expired_holds_and_releases_their_credits_once(
    credits: Credits,
) -> None:
    wallets = [new_wallet_address() for _ in range(3)]
    for wallet in wallets:
        await credits.grant(wallet, 10 * CREDIT)
        await credits.reserve(wallet, 2 * CREDIT, ttl_seconds=30)
        await credits.reserve(wallet, 3 * CREDIT, ttl_seconds=600)
    credits.clock.advance(seconds=31)

    # Sweepers of several replicas at once: each hold is released by exactly one of them.
    expired_by_each = await credits.sweep_as_replicas(4)

    assert sum(expired_by_each) == 3
    rows = await assert_invariants(credits)
    assert sorted(row.state for row in rows["reservations"]) == ["EXPIRED"] * 3 + ["HELD"] * 3
    assert {row.wallet_address: row.reserved for row in rows["accounts"]} == dict.fromkeys(
        wallets, 3 * CREDIT
    )
    assert {row.wallet_address: row.available for row in rows["accounts"]} == dict.fromkeys(
        wallets, 7 * CREDIT
    )


class BreakableClock(FakeClock):
    """A clock whose answer storage refuses (a naive time) while `broken`."""

    broken = False

    def __call__(self) -> datetime:
        return self.now.replace(tzinfo=None) if self.broken else self.now


async def test_a_failing_sweeper_shows_in_health_and_recovers(settings: Settings) -> None:
    clock = BreakableClock()
    async with running_credits(settings, clock) as credits:
        health = health_pb2_grpc.HealthStub(credits.channel)
        name = health_pb2.HealthCheckRequest(service="credits.reservation-sweeper")
        assert (await health.Check(name)).status == health_pb2.HealthCheckResponse.SERVING

        clock.broken = True
        assert not await credits.sweep()
        failing = (await health.Check(name)).status

        clock.broken = False
        assert await credits.sweep()
        recovered = (await health.Check(name)).status

    assert failing == health_pb2.HealthCheckResponse.NOT_SERVING
    assert recovered == health_pb2.HealthCheckResponse.SERVING


async def test_the_sweeper_runs_by_itself_in_the_service_lifecycle(settings: Settings) -> None:
    clock = FakeClock()
    async with running_credits(settings, clock, sweep_interval_seconds=0.05) as credits:
        wallet = new_wallet_address()
        await credits.grant(wallet, CREDIT)
        await credits.reserve(wallet, CREDIT, ttl_seconds=1)
        clock.advance(seconds=2)
        for _ in range(100):
            states = [row.state for row in (await stored_rows(settings))["reservations"]]
            if states == ["EXPIRED"]:
                break
            await asyncio.sleep(0.05)
        await assert_invariants(credits)

    assert states == ["EXPIRED"]
