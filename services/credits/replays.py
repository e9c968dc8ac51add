"""What a mutating call remembers under its idempotency key, and how a repeat is answered from it.

A result is stored as the ids it made (reservation, ledger entry) and the balance it returned; a
repeat reads the entry back as it was and the reservation as it is now (a repeated reserve of a
hold confirmed since shows it CONFIRMED), with the balance the first call returned.
"""

from __future__ import annotations

import json
from datetime import datetime

from services.credits.domain import Balance, Capture, Hold, LedgerEntry, Movement, Reservation
from services.credits.repository import CreditsRepositories


def encode(
    balance: Balance, reservation: Reservation | None = None, entry: LedgerEntry | None = None
) -> str:
    update_time = None if balance.update_time is None else balance.update_time.isoformat()
    return json.dumps(
        {
            "balance": [balance.available, balance.reserved, update_time],
            "reservation": None if reservation is None else reservation.reservation_id,
            "entry": None if entry is None else entry.entry_id,
        }
    )


def _balance_of(wallet_address: str, stored: str) -> Balance:
    """The balance as the first call returned it."""
    available, reserved, update_time = json.loads(stored)["balance"]
    when = None if update_time is None else datetime.fromisoformat(update_time)
    return Balance(wallet_address, available, reserved, when)


def encode_movement(movement: Movement) -> str:
    return encode(movement.balance, entry=movement.entry)


def encode_hold(hold: Hold) -> str:
    return encode(hold.balance, reservation=hold.reservation)


def encode_capture(capture: Capture) -> str:
    return encode(capture.balance, capture.reservation, capture.entry)


async def replayed_movement(r: CreditsRepositories, stored: str) -> Movement:
    entry = await _entry_of(r, stored)
    return Movement(entry, _balance_of(entry.wallet_address, stored))


async def replayed_hold(r: CreditsRepositories, stored: str, now: datetime) -> Hold:
    """The same reservation in its current state, with the balance the first call returned."""
    # Never deleted, so never ReservationNotFound.
    reservation = await r.reservations.get(json.loads(stored)["reservation"])
    return Hold(reservation.seen_at(now), _balance_of(reservation.wallet_address, stored))


async def replayed_capture(r: CreditsRepositories, stored: str, now: datetime) -> Capture:
    hold = await replayed_hold(r, stored, now)
    return Capture(hold.reservation, await _entry_of(r, stored), hold.balance)


async def _entry_of(r: CreditsRepositories, stored: str) -> LedgerEntry:
    entry = await r.ledger.find(entry_id=json.loads(stored)["entry"])
    assert entry is not None, "a remembered move has its ledger entry"
    return entry
