"""The credits use cases' rules through an in-memory unit of work: money moves, holds and their
resolutions, expiry and idempotency, checked in milliseconds. What only storage can show
(concurrent writers, both engines, the wire) is tested in tests/integration; the ledger's
invariants are checked here after every test, on the fake's committed state."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from services.core.errors import R3mesError
from services.core.pagination import PageRequest
from services.core.testing import FakeClock
from services.credits.domain import BALANCE_LIMIT, DEFAULT_TTL, LedgerEntryKind, ReservationState
from services.credits.repository import CreditsRepositories
from services.credits.usecases import CreditsUseCases
from tests.fakes.credits import CreditsState, credits_unit_of_work
from tests.fakes.uow import FakeUnitOfWork

WALLET = "remes1alice"
OTHER = "remes1bob"
CREDIT = 1_000_000
HELD, CONFIRMED = ReservationState.HELD, ReservationState.CONFIRMED
ROLLED_BACK, EXPIRED = ReservationState.ROLLED_BACK, ReservationState.EXPIRED

Unit = FakeUnitOfWork[CreditsState, CreditsRepositories]


def assert_invariants(state: CreditsState) -> None:
    """What docs/architecture.md promises of the ledger, on what was committed."""
    for wallet, account in state.accounts.items():
        total = 0
        for entry in (entry for entry in state.ledger if entry.wallet_address == wallet):
            total += entry.delta
            assert entry.balance_after == total
        assert account.available + account.reserved == total
        held = [h for h in state.reservations.values() if h.wallet_address == wallet]
        assert account.reserved == sum(h.amount for h in held if h.state is HELD)
        assert account.available >= 0
    for hold in state.reservations.values():
        captures = [e for e in state.ledger if e.reservation_id == hold.reservation_id]
        assert len(captures) == (1 if hold.state is CONFIRMED else 0)
        assert hold.captured == (-captures[0].delta if captures else 0)


@pytest.fixture
def uow() -> Iterator[Unit]:
    unit = credits_unit_of_work()
    yield unit
    assert_invariants(unit.state)


@pytest.fixture
def use_cases(uow: Unit, clock: FakeClock) -> CreditsUseCases:
    return CreditsUseCases(uow, clock)


def reason_of(raised: pytest.ExceptionInfo[R3mesError]) -> str:
    return raised.value.reason


async def test_a_grant_adds_to_available_and_is_one_ledger_entry_with_the_total_after_it(
    use_cases: CreditsUseCases, uow: Unit, clock: FakeClock
) -> None:
    await use_cases.grant(WALLET, 3 * CREDIT, "first", "g1")
    movement = await use_cases.grant(WALLET, 2 * CREDIT, "second", "g2")

    assert (movement.entry.kind, movement.entry.delta) == (LedgerEntryKind.GRANT, 2 * CREDIT)
    assert movement.entry.balance_after == 5 * CREDIT
    assert (movement.balance.available, movement.balance.reserved) == (5 * CREDIT, 0)
    assert movement.balance.update_time == clock.now
    assert [entry.description for entry in uow.state.ledger] == ["first", "second"]


async def test_a_grant_past_the_balance_limit_is_refused_and_leaves_no_trace(
    use_cases: CreditsUseCases, uow: Unit
) -> None:
    await use_cases.grant(WALLET, BALANCE_LIMIT - CREDIT, "", "g1")
    before = uow.state

    with pytest.raises(R3mesError) as raised:
        await use_cases.grant(WALLET, CREDIT + 1, "", "g2")

    assert reason_of(raised) == "BALANCE_LIMIT_EXCEEDED"
    assert uow.state == before  # no entry, no key: a retry with g2 runs as a first call
    assert (await use_cases.grant(WALLET, CREDIT, "", "g2")).balance.available == BALANCE_LIMIT


async def test_a_wallet_that_never_had_credits_reads_zero_and_stores_nothing(
    use_cases: CreditsUseCases, uow: Unit
) -> None:
    balance = await use_cases.balance(WALLET)

    assert (balance.available, balance.reserved, balance.update_time) == (0, 0, None)
    assert uow.state == CreditsState()


async def test_a_reserve_moves_credits_to_reserved_and_writes_no_ledger_entry(
    use_cases: CreditsUseCases, uow: Unit, clock: FakeClock
) -> None:
    await use_cases.grant(WALLET, 10 * CREDIT, "", "g")

    hold = await use_cases.reserve(WALLET, 4 * CREDIT, 60, "job 7", "r")

    assert hold.reservation.state is HELD
    assert hold.reservation.expire_time == clock.now + timedelta(seconds=60)
    assert hold.reservation.description == "job 7"
    assert (hold.balance.available, hold.balance.reserved) == (6 * CREDIT, 4 * CREDIT)
    assert len(uow.state.ledger) == 1


async def test_a_reserve_without_a_ttl_holds_for_the_default_time(
    use_cases: CreditsUseCases, clock: FakeClock
) -> None:
    await use_cases.grant(WALLET, CREDIT, "", "g")

    hold = await use_cases.reserve(WALLET, CREDIT, 0, "", "r")

    assert hold.reservation.expire_time == clock.now + DEFAULT_TTL


async def test_a_reserve_of_more_than_is_available_names_the_available_amount_and_holds_nothing(
    use_cases: CreditsUseCases, uow: Unit
) -> None:
    await use_cases.grant(WALLET, 5 * CREDIT, "", "g")
    await use_cases.reserve(WALLET, 3 * CREDIT, 60, "", "r1")
    before = uow.state

    with pytest.raises(R3mesError) as raised:
        await use_cases.reserve(WALLET, 3 * CREDIT, 60, "", "r2")

    assert reason_of(raised) == "INSUFFICIENT_CREDITS"
    assert raised.value.details.metadata["available_micro_credits"] == str(2 * CREDIT)
    assert raised.value.details.metadata["requested_micro_credits"] == str(3 * CREDIT)
    assert uow.state == before  # the hold written first was rolled back with the rest


async def test_confirming_in_full_captures_the_whole_hold_as_one_capture_entry(
    use_cases: CreditsUseCases, clock: FakeClock
) -> None:
    await use_cases.grant(WALLET, 10 * CREDIT, "", "g")
    hold = await use_cases.reserve(WALLET, 4 * CREDIT, 60, "job", "r")
    clock.advance(seconds=5)

    capture = await use_cases.confirm(hold.reservation.reservation_id, None, "c")

    assert capture.reservation.state is CONFIRMED
    assert capture.reservation.captured == 4 * CREDIT
    assert capture.reservation.close_time == clock.now
    assert (capture.entry.kind, capture.entry.delta) == (LedgerEntryKind.CAPTURE, -4 * CREDIT)
    assert capture.entry.reservation_id == hold.reservation.reservation_id
    assert capture.entry.description == "job"
    assert (capture.balance.available, capture.balance.reserved) == (6 * CREDIT, 0)


async def test_confirming_part_captures_that_part_and_releases_the_rest(
    use_cases: CreditsUseCases,
) -> None:
    await use_cases.grant(WALLET, 10 * CREDIT, "", "g")
    hold = await use_cases.reserve(WALLET, 4 * CREDIT, 60, "", "r")

    capture = await use_cases.confirm(hold.reservation.reservation_id, CREDIT, "c")

    assert capture.reservation.captured == CREDIT
    assert capture.entry.delta == -CREDIT
    assert (capture.balance.available, capture.balance.reserved) == (9 * CREDIT, 0)


async def test_confirming_more_than_the_hold_is_refused_and_the_hold_stays_held(
    use_cases: CreditsUseCases, uow: Unit
) -> None:
    await use_cases.grant(WALLET, 10 * CREDIT, "", "g")
    hold = await use_cases.reserve(WALLET, 4 * CREDIT, 60, "", "r")
    reservation_id = hold.reservation.reservation_id

    with pytest.raises(R3mesError) as raised:
        await use_cases.confirm(reservation_id, 4 * CREDIT + 1, "c")

    assert reason_of(raised) == "AMOUNT_EXCEEDS_RESERVATION"
    assert raised.value.details.metadata["reserved_micro_credits"] == str(4 * CREDIT)
    assert uow.state.reservations[reservation_id].state is HELD


async def test_a_hold_is_resolved_once_and_later_resolutions_say_how_it_was(
    use_cases: CreditsUseCases,
) -> None:
    await use_cases.grant(WALLET, 10 * CREDIT, "", "g")
    confirmed = (await use_cases.reserve(WALLET, CREDIT, 60, "", "r1")).reservation
    rolled_back = (await use_cases.reserve(WALLET, CREDIT, 60, "", "r2")).reservation
    await use_cases.confirm(confirmed.reservation_id, None, "c1")
    await use_cases.roll_back(rolled_back.reservation_id, "b1")

    refusals = []
    for attempt in (
        use_cases.confirm(confirmed.reservation_id, None, "c2"),
        use_cases.roll_back(confirmed.reservation_id, "b2"),
        use_cases.confirm(rolled_back.reservation_id, None, "c3"),
        use_cases.confirm("no-such-hold", None, "c4"),
        use_cases.roll_back("no-such-hold", "b4"),
    ):
        with pytest.raises(R3mesError) as raised:
            await attempt
        refusals.append(reason_of(raised))

    assert refusals == [
        "RESERVATION_ALREADY_CONFIRMED",
        "RESERVATION_ALREADY_CONFIRMED",
        "RESERVATION_ALREADY_ROLLED_BACK",
        "RESERVATION_NOT_FOUND",
        "RESERVATION_NOT_FOUND",
    ]


async def test_a_rollback_releases_the_whole_hold_and_a_second_one_returns_it_unchanged(
    use_cases: CreditsUseCases, clock: FakeClock
) -> None:
    await use_cases.grant(WALLET, 10 * CREDIT, "", "g")
    hold = await use_cases.reserve(WALLET, 4 * CREDIT, 60, "", "r")
    reservation_id = hold.reservation.reservation_id

    first = await use_cases.roll_back(reservation_id, "b1")
    clock.advance(seconds=1)
    second = await use_cases.roll_back(reservation_id, "b2")

    assert first.reservation.state is ROLLED_BACK
    assert (first.balance.available, first.balance.reserved) == (10 * CREDIT, 0)
    assert second.reservation == first.reservation  # closed at the first rollback's time


async def test_a_deduction_takes_from_available_and_is_refused_beyond_it(
    use_cases: CreditsUseCases,
) -> None:
    await use_cases.grant(WALLET, 10 * CREDIT, "", "g")
    await use_cases.reserve(WALLET, 6 * CREDIT, 60, "", "r")

    movement = await use_cases.deduct(WALLET, 3 * CREDIT, "fee", "d1")
    with pytest.raises(R3mesError) as raised:
        await use_cases.deduct(WALLET, 2 * CREDIT, "fee", "d2")

    assert (movement.entry.kind, movement.entry.delta) == (LedgerEntryKind.DEDUCTION, -3 * CREDIT)
    assert movement.entry.balance_after == 7 * CREDIT
    assert (movement.balance.available, movement.balance.reserved) == (CREDIT, 6 * CREDIT)
    assert reason_of(raised) == "INSUFFICIENT_CREDITS"
    assert raised.value.details.metadata["available_micro_credits"] == str(CREDIT)


async def test_an_expired_hold_is_available_to_readers_before_any_sweep(
    use_cases: CreditsUseCases, uow: Unit, clock: FakeClock
) -> None:
    await use_cases.grant(WALLET, 10 * CREDIT, "", "g")
    hold = await use_cases.reserve(WALLET, 4 * CREDIT, 60, "", "r")
    clock.advance(seconds=60)

    balance = await use_cases.balance(WALLET)
    total = await use_cases.network_total()

    assert (balance.available, balance.reserved) == (10 * CREDIT, 0)
    assert (total.available, total.reserved) == (10 * CREDIT, 0)
    # Nothing was written: the stored account still holds it until a sweep or a touch.
    assert uow.state.reservations[hold.reservation.reservation_id].state is HELD


async def test_an_expired_hold_cannot_be_confirmed(
    use_cases: CreditsUseCases, clock: FakeClock
) -> None:
    await use_cases.grant(WALLET, 10 * CREDIT, "", "g")
    hold = await use_cases.reserve(WALLET, 4 * CREDIT, 60, "", "r")
    clock.advance(seconds=61)

    with pytest.raises(R3mesError) as raised:
        await use_cases.confirm(hold.reservation.reservation_id, None, "c")

    assert reason_of(raised) == "RESERVATION_EXPIRED"


async def test_a_rollback_of_an_expired_hold_returns_it_expired_at_its_expire_time(
    use_cases: CreditsUseCases, uow: Unit, clock: FakeClock
) -> None:
    await use_cases.grant(WALLET, 10 * CREDIT, "", "g")
    hold = await use_cases.reserve(WALLET, 4 * CREDIT, 60, "", "r")
    clock.advance(minutes=5)

    rolled = await use_cases.roll_back(hold.reservation.reservation_id, "b")

    assert rolled.reservation.state is EXPIRED
    assert rolled.reservation.close_time == hold.reservation.expire_time
    assert (rolled.balance.available, rolled.balance.reserved) == (10 * CREDIT, 0)
    assert uow.state.accounts[WALLET].reserved == 0


async def test_credits_of_expired_holds_can_be_reserved_and_deducted_before_a_sweep(
    use_cases: CreditsUseCases, uow: Unit, clock: FakeClock
) -> None:
    await use_cases.grant(WALLET, 10 * CREDIT, "", "g")
    first = await use_cases.reserve(WALLET, 8 * CREDIT, 60, "", "r1")
    clock.advance(seconds=60)

    second = await use_cases.reserve(WALLET, 9 * CREDIT, 60, "", "r2")
    deducted = await use_cases.deduct(WALLET, CREDIT, "", "d")

    assert (second.balance.available, second.balance.reserved) == (CREDIT, 9 * CREDIT)
    assert deducted.balance.available == 0
    assert uow.state.reservations[first.reservation.reservation_id].state is EXPIRED


async def test_the_sweeper_expires_each_due_hold_once_and_releases_its_credits(
    use_cases: CreditsUseCases, uow: Unit, clock: FakeClock
) -> None:
    await use_cases.grant(WALLET, 10 * CREDIT, "", "g")
    await use_cases.grant(OTHER, 10 * CREDIT, "", "g2")
    due = [
        (await use_cases.reserve(wallet, CREDIT, 60, "", f"r-{wallet}-{n}")).reservation
        for wallet in (WALLET, OTHER)
        for n in range(2)
    ]
    live = await use_cases.reserve(WALLET, CREDIT, 600, "", "r-live")
    clock.advance(seconds=61)

    assert await use_cases.expire_due() == 4
    assert await use_cases.expire_due() == 0
    states = {r.reservation_id: r.state for r in uow.state.reservations.values()}
    assert [states[r.reservation_id] for r in due] == [EXPIRED] * 4
    assert states[live.reservation.reservation_id] is HELD
    assert uow.state.accounts[WALLET].reserved == CREDIT
    assert uow.state.accounts[OTHER].reserved == 0


async def test_a_repeated_grant_returns_the_first_entry_and_grants_once(
    use_cases: CreditsUseCases, uow: Unit, clock: FakeClock
) -> None:
    first = await use_cases.grant(WALLET, CREDIT, "", "g")
    clock.advance(seconds=1)
    await use_cases.grant(WALLET, CREDIT, "", "other")

    repeat = await use_cases.grant(WALLET, CREDIT, "", "g")

    assert repeat == first  # the same entry and the balance the first call returned
    assert uow.state.accounts[WALLET].available == 2 * CREDIT


async def test_a_repeated_reserve_shows_the_hold_in_its_current_state(
    use_cases: CreditsUseCases,
) -> None:
    await use_cases.grant(WALLET, 10 * CREDIT, "", "g")
    first = await use_cases.reserve(WALLET, 4 * CREDIT, 60, "", "r")
    await use_cases.confirm(first.reservation.reservation_id, None, "c")

    repeat = await use_cases.reserve(WALLET, 4 * CREDIT, 60, "", "r")

    assert repeat.reservation.reservation_id == first.reservation.reservation_id
    assert repeat.reservation.state is CONFIRMED
    assert repeat.balance == first.balance


async def test_a_repeated_confirm_replays_the_capture_and_captures_once(
    use_cases: CreditsUseCases, uow: Unit
) -> None:
    await use_cases.grant(WALLET, 10 * CREDIT, "", "g")
    hold = await use_cases.reserve(WALLET, 4 * CREDIT, 60, "", "r")

    first = await use_cases.confirm(hold.reservation.reservation_id, CREDIT, "c")
    repeat = await use_cases.confirm(hold.reservation.reservation_id, CREDIT, "c")

    assert repeat == first
    assert [entry.kind for entry in uow.state.ledger].count(LedgerEntryKind.CAPTURE) == 1


async def test_a_key_reused_with_other_parameters_is_refused_and_changes_nothing(
    use_cases: CreditsUseCases, uow: Unit
) -> None:
    await use_cases.grant(WALLET, CREDIT, "", "k")
    before = uow.state

    with pytest.raises(R3mesError) as raised:
        await use_cases.grant(WALLET, 2 * CREDIT, "", "k")

    assert reason_of(raised) == "IDEMPOTENCY_KEY_REUSED"
    assert raised.value.details.metadata == {"idempotency_key": "k"}
    assert uow.state == before


async def test_a_key_is_scoped_to_its_operation(use_cases: CreditsUseCases) -> None:
    await use_cases.grant(WALLET, 3 * CREDIT, "", "k")

    deducted = await use_cases.deduct(WALLET, CREDIT, "", "k")

    assert deducted.balance.available == 2 * CREDIT


async def test_a_first_call_that_failed_keeps_no_key_so_its_retry_runs_anew(
    use_cases: CreditsUseCases,
) -> None:
    with pytest.raises(R3mesError):
        await use_cases.reserve(WALLET, CREDIT, 60, "", "r")
    await use_cases.grant(WALLET, CREDIT, "", "g")

    retried = await use_cases.reserve(WALLET, CREDIT, 60, "", "r")

    assert (retried.reservation.state, retried.balance.reserved) == (HELD, CREDIT)


async def test_a_reserve_that_met_a_concurrent_unit_runs_again_and_holds_once(
    use_cases: CreditsUseCases, uow: Unit
) -> None:
    await use_cases.grant(WALLET, 10 * CREDIT, "", "g")
    uow.conflict_on_next_units(2)

    hold = await use_cases.reserve(WALLET, 4 * CREDIT, 60, "", "r")

    assert list(uow.state.reservations) == [hold.reservation.reservation_id]
    assert uow.state.accounts[WALLET].reserved == 4 * CREDIT


async def test_the_ledger_pages_newest_first_and_continues_after_the_last_entry(
    use_cases: CreditsUseCases,
) -> None:
    for n in range(5):
        await use_cases.grant(WALLET, (n + 1) * CREDIT, f"grant {n}", f"g{n}")
    await use_cases.grant(OTHER, CREDIT, "not alice's", "o")

    first = await use_cases.ledger(WALLET, PageRequest(3))
    rest = await use_cases.ledger(WALLET, PageRequest(3, first.next_after))

    assert [e.description for e in first.items] == ["grant 4", "grant 3", "grant 2"]
    assert [e.description for e in rest.items] == ["grant 1", "grant 0"]
    assert rest.next_after is None
