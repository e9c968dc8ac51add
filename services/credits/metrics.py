"""The credits service's own series: its holds as storage has them, refreshed by the
reservation sweeper after each sweep (so a scrape costs no query, and every replica reports the
same figures: read them with max, not sum)."""

from __future__ import annotations

from datetime import datetime

from prometheus_client import Gauge

from services.credits.domain import HeldReservations

HELD = Gauge("r3mes_credits_reservations_held", "Reservations in state HELD in storage.")
OLDEST_HELD_AGE = Gauge(
    "r3mes_credits_oldest_held_reservation_age_seconds",
    "Age of the oldest HELD reservation (0 when there is none).",
)
HELD_PAST_EXPIRY = Gauge(
    "r3mes_credits_reservations_held_past_expiry",
    "HELD reservations past their expire time: released for readers, not yet swept.",
)


def publish(held: HeldReservations, now: datetime) -> None:
    HELD.set(held.count)
    oldest = held.oldest_create_time
    OLDEST_HELD_AGE.set(0 if oldest is None else max((now - oldest).total_seconds(), 0))
    HELD_PAST_EXPIRY.set(held.past_expiry)
