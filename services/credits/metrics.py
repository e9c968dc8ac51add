"""The credits service's own series.

The holds as storage has them (gauges), refreshed by the reservation sweeper after each sweep
(how many are in each state at most once a minute: that count reads every reservation), so a
scrape costs no query, and every replica reports the same figures: read them with max, not sum.

The holds' changes of state (a counter by the state entered), counted by the replica whose call
made the change, once: a repeat answered from its stored reply counts nothing. Sum them over
replicas."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from prometheus_client import Counter, Gauge

from services.credits.domain import HeldReservations, ReservationState, Transitions

HELD = Gauge("r3mes_credits_reservations_held", "Reservations in state HELD in storage.")
OLDEST_HELD_AGE = Gauge(
    "r3mes_credits_oldest_held_reservation_age_seconds",
    "Age of the oldest HELD reservation (0 when there is none).",
)
HELD_PAST_EXPIRY = Gauge(
    "r3mes_credits_reservations_held_past_expiry",
    "HELD reservations past their expire time: released for readers, not yet swept.",
)

STORED = Gauge(
    "r3mes_credits_reservations",
    "Reservations in storage by state (held, confirmed, rolled_back, expired).",
    ["state"],
)
# Every state's series from the first count on, 0 while none is in it.
_STORED = {state: STORED.labels(state.value.lower()) for state in ReservationState}

TRANSITIONS = Counter(
    "r3mes_credits_reservation_transitions_total",
    "Reservations that entered a state (held, confirmed, rolled_back, expired), each change "
    "counted once: a repeated call answered from its stored reply counts nothing.",
    ["state"],
)
# Every state's series from the start: a rate over a series that appears late misses its first
# increase.
_ENTERED = {state: TRANSITIONS.labels(state.value.lower()) for state in ReservationState}


def count(transitions: Transitions) -> None:
    if transitions.entered is not None:
        _ENTERED[transitions.entered].inc()
    if transitions.expired:
        _ENTERED[ReservationState.EXPIRED].inc(transitions.expired)


def publish(held: HeldReservations, now: datetime) -> None:
    HELD.set(held.count)
    oldest = held.oldest_create_time
    OLDEST_HELD_AGE.set(0 if oldest is None else max((now - oldest).total_seconds(), 0))
    HELD_PAST_EXPIRY.set(held.past_expiry)


def publish_by_state(counts: Mapping[ReservationState, int]) -> None:
    for state, gauge in _STORED.items():
        gauge.set(counts[state])
