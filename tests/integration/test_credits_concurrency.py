"""Concurrent callers never overdraw a wallet, and each hold resolves exactly once."""

from __future__ import annotations

import asyncio
from functools import partial

from services.core.testing import new_wallet_address
from tests.integration.credits_support import (
    CREDIT,
    Credits,
    kinds,
    new_key,
    outcome_of,
)

STORM = 500


async def test_500_concurrent_reserves_of_one_credit_on_100_credits_hold_exactly_100(
    credits: Credits,
) -> None:
    wallet = new_wallet_address()
    await credits.grant(wallet, 100 * CREDIT)

    outcomes = await asyncio.gather(
        *(outcome_of(partial(credits.reserve, wallet, CREDIT, key=new_key())) for _ in range(STORM))
    )

    assert kinds(outcomes) == {"OK": 100, "INSUFFICIENT_CREDITS": STORM - 100}
    balance = await credits.balance(wallet)
    assert (balance.available_micro_credits, balance.reserved_micro_credits) == (0, 100 * CREDIT)


async def test_concurrent_deductions_and_reserves_never_take_more_than_the_wallet_has(
    credits: Credits,
) -> None:
    wallet = new_wallet_address()
    await credits.grant(wallet, 50 * CREDIT)

    calls = [partial(credits.reserve, wallet, CREDIT, key=new_key()) for _ in range(60)] + [
        partial(credits.deduct, wallet, CREDIT, key=new_key()) for _ in range(60)
    ]
    outcomes = await asyncio.gather(*(outcome_of(call) for call in calls))

    assert kinds(outcomes) == {"OK": 50, "INSUFFICIENT_CREDITS": 70}
    balance = await credits.balance(wallet)
    assert balance.available_micro_credits == 0
    assert balance.total_micro_credits == balance.reserved_micro_credits


async def test_a_confirm_and_a_rollback_racing_on_one_hold_exactly_one_wins(
    credits: Credits,
) -> None:
    wallet = new_wallet_address()
    await credits.grant(wallet, 40 * CREDIT)
    holds = [(await credits.reserve(wallet, CREDIT)).reservation.reservation_id for _ in range(40)]

    races = await asyncio.gather(
        *(
            asyncio.gather(
                outcome_of(partial(credits.confirm, hold, key=new_key())),
                outcome_of(partial(credits.roll_back, hold, key=new_key())),
            )
            for hold in holds
        )
    )

    confirmed = sum(1 for confirm, _ in races if not isinstance(confirm, str))
    for confirm, rollback in races:
        if isinstance(confirm, str):
            assert confirm == "RESERVATION_ALREADY_ROLLED_BACK"
            assert not isinstance(rollback, str)
        else:
            assert rollback == "RESERVATION_ALREADY_CONFIRMED"
    balance = await credits.balance(wallet)
    assert balance.reserved_micro_credits == 0
    assert balance.total_micro_credits == (40 - confirmed) * CREDIT


async def test_two_confirms_of_one_hold_capture_it_once(credits: Credits) -> None:
    wallet = new_wallet_address()
    await credits.grant(wallet, 20 * CREDIT)
    holds = [(await credits.reserve(wallet, CREDIT)).reservation.reservation_id for _ in range(20)]

    races = await asyncio.gather(
        *(
            asyncio.gather(
                *(outcome_of(partial(credits.confirm, hold, key=new_key())) for _ in range(2))
            )
            for hold in holds
        )
    )

    for outcomes in races:
        assert kinds(list(outcomes)) == {"OK": 1, "RESERVATION_ALREADY_CONFIRMED": 1}
    assert (await credits.balance(wallet)).total_micro_credits == 0
