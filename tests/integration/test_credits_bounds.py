"""Network totals past what an int64 holds: summed exactly, answered saturated and flagged."""

from __future__ import annotations

from r3mes.credits.v1 import credits_pb2

from services.core.testing import new_wallet_address
from services.credits.domain import BALANCE_LIMIT, INT64_MAX
from tests.integration.credits_support import (
    Credits,
    seed_grant,
)


async def network_total(credits: Credits) -> credits_pb2.GetCreditsTotalResponse:
    return await credits.stub.GetCreditsTotal(credits_pb2.GetCreditsTotalRequest())


async def test_nine_wallets_at_the_balance_limit_are_summed_exactly(credits: Credits) -> None:
    wallets = [new_wallet_address() for _ in range(9)]
    for wallet in wallets:
        await seed_grant(credits, wallet, BALANCE_LIMIT)
    # Part of one wallet held, part of that expired unswept: still exact, in the right column.
    await credits.reserve(wallets[0], 3 * 10**14, ttl_seconds=60)
    await credits.reserve(wallets[0], 10**14, ttl_seconds=120)
    credits.clock.advance(seconds=90)

    total = await network_total(credits)

    assert total.total_micro_credits == 9 * BALANCE_LIMIT
    assert total.reserved_micro_credits == 10**14
    assert total.available_micro_credits == 9 * BALANCE_LIMIT - 10**14
    assert not total.saturated


async def test_ten_wallets_at_the_balance_limit_read_a_saturated_network_total(
    credits: Credits,
) -> None:
    wallets = [new_wallet_address() for _ in range(10)]
    for wallet in wallets:
        await seed_grant(credits, wallet, BALANCE_LIMIT)
    await credits.reserve(wallets[0], 10**15)

    first = await network_total(credits)
    again = await network_total(credits)

    assert first == again
    assert first.total_micro_credits == INT64_MAX
    assert first.available_micro_credits == INT64_MAX
    assert first.reserved_micro_credits == 10**15
    assert first.saturated
