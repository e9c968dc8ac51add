"""The credits service's pure rules: balances as readers see them, holds and their refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.core.errors import FailedPrecondition
from services.credits.domain import (
    INT64_MAX,
    Balance,
    InsufficientCredits,
    NetworkTotal,
    Reservation,
    ReservationState,
    capture_amount,
    expire_time_of,
    new_identifier,
    saturate,
)

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def hold(state: ReservationState = ReservationState.HELD, amount: int = 100) -> Reservation:
    return Reservation(
        reservation_id="r1",
        wallet_address="remes1w",
        amount=amount,
        captured=0,
        state=state,
        description="",
        create_time=NOW,
        expire_time=NOW + timedelta(seconds=60),
    )


def test_expired_holds_nobody_swept_count_as_available_for_a_reader() -> None:
    balance = Balance.of_stored(
        "remes1w", available=10, reserved=50, expired_unswept=20, update_time=NOW
    )

    assert (balance.available, balance.reserved, balance.total) == (30, 30, 60)


def test_expired_holds_can_never_exceed_what_is_reserved() -> None:
    with pytest.raises(ValueError, match="cannot exceed"):
        Balance.of_stored("remes1w", available=10, reserved=5, expired_unswept=6, update_time=NOW)


def test_a_wallet_that_never_had_credits_is_zero_with_no_update_time() -> None:
    assert Balance.empty("remes1w") == Balance("remes1w", 0, 0, None)


def test_a_ttl_of_zero_means_the_default_of_five_minutes() -> None:
    assert expire_time_of(NOW, 0) == NOW + timedelta(seconds=300)
    assert expire_time_of(NOW, 42) == NOW + timedelta(seconds=42)


def test_a_held_reservation_past_its_expire_time_is_seen_expired_closed_at_that_time() -> None:
    reservation = hold()

    assert reservation.seen_at(NOW + timedelta(seconds=59)) == reservation
    seen = reservation.seen_at(NOW + timedelta(seconds=60))
    assert seen.state is ReservationState.EXPIRED
    assert seen.close_time == reservation.expire_time
    assert not reservation.is_live(NOW + timedelta(seconds=60))


@pytest.mark.parametrize(
    ("state", "at", "reason"),
    [
        (ReservationState.CONFIRMED, NOW, "RESERVATION_ALREADY_CONFIRMED"),
        (ReservationState.ROLLED_BACK, NOW, "RESERVATION_ALREADY_ROLLED_BACK"),
        (ReservationState.EXPIRED, NOW, "RESERVATION_EXPIRED"),
        (ReservationState.HELD, NOW + timedelta(seconds=60), "RESERVATION_EXPIRED"),
    ],
)
def test_a_reservation_that_is_not_live_refuses_to_be_confirmed_naming_why(
    state: ReservationState, at: datetime, reason: str
) -> None:
    refusal = hold(state).refusal_to_confirm(at, None)

    assert isinstance(refusal, FailedPrecondition)
    assert refusal.reason == reason


def test_a_live_hold_may_capture_up_to_its_amount_and_no_more() -> None:
    reservation = hold(amount=100)

    assert reservation.refusal_to_confirm(NOW, None) is None
    assert reservation.refusal_to_confirm(NOW, 100) is None
    refusal = reservation.refusal_to_confirm(NOW, 101)
    assert refusal is not None
    assert refusal.reason == "AMOUNT_EXCEEDS_RESERVATION"
    assert capture_amount(100, None) == 100
    assert capture_amount(100, 40) == 40


def test_only_a_confirmed_reservation_refuses_a_rollback() -> None:
    confirmed = hold(ReservationState.CONFIRMED).refusal_to_roll_back()

    assert confirmed is not None
    assert confirmed.reason == "RESERVATION_ALREADY_CONFIRMED"
    for state in (ReservationState.HELD, ReservationState.ROLLED_BACK, ReservationState.EXPIRED):
        assert hold(state).refusal_to_roll_back() is None


def test_insufficient_credits_carries_the_available_amount_and_a_precondition_violation() -> None:
    error = InsufficientCredits("remes1w", requested=5, available=3)

    assert error.reason == "INSUFFICIENT_CREDITS"
    assert error.details.metadata["available_micro_credits"] == "3"
    assert [v.type for v in error.details.precondition_violations] == ["INSUFFICIENT_CREDITS"]


def test_identifiers_are_long_random_and_url_safe() -> None:
    identifiers = {new_identifier() for _ in range(1000)}

    assert len(identifiers) == 1000
    assert all(len(i) == 32 and i.replace("-", "").replace("_", "").isalnum() for i in identifiers)


def test_a_network_total_past_int64_is_saturated_in_each_field_that_passes_it() -> None:
    fits = NetworkTotal(available=INT64_MAX - 5, reserved=5)
    passes = NetworkTotal(available=INT64_MAX, reserved=7)

    assert not fits.saturated
    assert saturate(fits.total) == INT64_MAX
    assert passes.saturated
    assert (saturate(passes.available), saturate(passes.reserved)) == (INT64_MAX, 7)
    assert saturate(passes.total) == INT64_MAX
