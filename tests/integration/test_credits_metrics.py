"""The holds' changes of state as Prometheus reads them off credits: each change counted once, by
the state entered, whichever way it happened (a call, a touch of the wallet, the sweeper), and
never for a repeated call answered from its stored reply; on both engines (on PostgreSQL the
moves are single statements that say what they changed). And the holds as storage has them, by
state, as each sweep leaves them."""

from __future__ import annotations

from collections import Counter

import grpc
import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.core.testing import new_wallet_address
from tests.integration.credits_support import CREDIT, Credits, new_key, stored_rows
from tests.integration.rpc import failure_of

STATES = ("held", "confirmed", "rolled_back", "expired")


def exposed() -> dict[str, float]:
    """This process's series as its /metrics page shows them: the transitions by state and the
    held gauges."""
    text = generate_latest(REGISTRY).decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "r3mes_credits_reservation_transitions_total":
                values[sample.labels["state"]] = sample.value
            elif sample.name.startswith("r3mes_credits_") and not sample.labels:
                values[sample.name] = sample.value
    return values


def stored_by_state() -> dict[str, float]:
    """The gauge of reservations in storage by state, as the /metrics page shows it."""
    text = generate_latest(REGISTRY).decode()
    return {
        sample.labels["state"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "r3mes_credits_reservations"
    }


def transitions_since(before: dict[str, float]) -> dict[str, float]:
    now = exposed()
    return {state: now[state] - before[state] for state in STATES}


async def test_every_change_of_a_holds_state_is_counted_once_and_repeats_are_not(
    credits: Credits,
) -> None:
    before = exposed()
    payer, renewer, spender, short = (new_wallet_address() for _ in range(4))
    await credits.grant(payer, 100 * CREDIT)
    reserve_keys = [new_key("reserve") for _ in range(5)]
    holds = [
        (await credits.reserve(payer, 10 * CREDIT, ttl_seconds=60, key=key)).reservation
        for key in reserve_keys
    ]
    for key in reserve_keys[:2]:
        await credits.reserve(payer, 10 * CREDIT, ttl_seconds=60, key=key)
    confirm_key = new_key("confirm")
    await credits.confirm(holds[0].reservation_id, 4 * CREDIT, key=confirm_key)
    await credits.confirm(holds[0].reservation_id, 4 * CREDIT, key=confirm_key)
    await credits.confirm(holds[1].reservation_id)
    rollback_key = new_key("rollback")
    await credits.roll_back(holds[2].reservation_id, key=rollback_key)
    await credits.roll_back(holds[2].reservation_id, key=rollback_key)
    # Another key on a hold rolled back before: answered as it is, no change.
    await credits.roll_back(holds[2].reservation_id)
    for wallet, amount in ((renewer, 10 * CREDIT), (spender, 10 * CREDIT), (short, 6 * CREDIT)):
        await credits.grant(wallet, 10 * CREDIT)
        await credits.reserve(wallet, amount, ttl_seconds=60)
    assert transitions_since(before) == {"held": 8, "confirmed": 2, "rolled_back": 1, "expired": 0}

    credits.clock.advance(seconds=60)
    # Past its time and unswept: the rollback resolves it as EXPIRED.
    expired_key = new_key("rollback")
    await credits.roll_back(holds[3].reservation_id, key=expired_key)
    await credits.roll_back(holds[3].reservation_id, key=expired_key)
    # Touches of a wallet short of credits resolve its holds past their time on the way.
    renew_key, spend_key = new_key("reserve"), new_key("deduct")
    await credits.reserve(renewer, 10 * CREDIT, ttl_seconds=600, key=renew_key)
    await credits.reserve(renewer, 10 * CREDIT, ttl_seconds=600, key=renew_key)
    await credits.deduct(spender, 5 * CREDIT, key=spend_key)
    await credits.deduct(spender, 5 * CREDIT, key=spend_key)
    # A refused reserve undoes all it did, the expiry it made on the way included.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await credits.reserve(short, 20 * CREDIT)
    assert failure_of(refused.value).reason == "INSUFFICIENT_CREDITS"
    assert transitions_since(before) == {"held": 9, "confirmed": 2, "rolled_back": 1, "expired": 3}

    credits.clock.advance(seconds=30)
    assert await credits.sweep()
    assert await credits.sweep()

    assert transitions_since(before) == {"held": 9, "confirmed": 2, "rolled_back": 1, "expired": 5}
    stored = Counter(row.state for row in (await stored_rows(credits.settings))["reservations"])
    assert stored == {"HELD": 1, "CONFIRMED": 2, "ROLLED_BACK": 1, "EXPIRED": 5}
    # The one pending hold, the renewer's, was made 30 seconds ago.
    gauges = exposed()
    assert gauges["r3mes_credits_reservations_held"] == 1
    assert gauges["r3mes_credits_oldest_held_reservation_age_seconds"] == 30
    assert gauges["r3mes_credits_reservations_held_past_expiry"] == 0
    assert stored_by_state() == {"held": 1, "confirmed": 2, "rolled_back": 1, "expired": 5}


async def test_a_sweep_publishes_how_many_reservations_are_in_each_state_once_a_minute(
    credits: Credits,
) -> None:
    wallet = new_wallet_address()
    await credits.grant(wallet, 10 * CREDIT)
    holds = [(await credits.reserve(wallet, CREDIT, ttl_seconds=120)).reservation for _ in range(4)]
    await credits.confirm(holds[0].reservation_id, CREDIT // 2)

    # A minute after the count the server's first sweep made.
    credits.clock.advance(seconds=60)
    assert await credits.sweep()
    first = stored_by_state()
    await credits.roll_back(holds[1].reservation_id)
    assert await credits.sweep()
    # Within the minute the HELD gauge moves, the count by state is the last one.
    within_the_minute = stored_by_state(), exposed()["r3mes_credits_reservations_held"]
    credits.clock.advance(seconds=60)
    assert await credits.sweep()

    assert first == {"held": 3, "confirmed": 1, "rolled_back": 0, "expired": 0}
    assert within_the_minute == (first, 2)
    # The two left expired a minute later, and the sweep that resolved them counted again.
    assert stored_by_state() == {"held": 0, "confirmed": 1, "rolled_back": 1, "expired": 2}
    stored = Counter(row.state for row in (await stored_rows(credits.settings))["reservations"])
    assert stored == {"CONFIRMED": 1, "ROLLED_BACK": 1, "EXPIRED": 2}
