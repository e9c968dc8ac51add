"""What a mutating call remembers under its idempotency key, and how a repeat is answered from it.

A result is stored as the ids it made (reservation, ledger entry) and the balance it returned; a
repeat reads the entry back as it was and the reservation as it is now (a repeated reserve of a
hold confirmed since shows it CONFIRMED), with the balance the first call returned.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

from services.credits.domain import Balance, Capture, Hold, LedgerEntry, Movement, Reservation
from services.credits.repository import CreditsRepositories

ResultT = TypeVar("ResultT")
Replay = Callable[[str], Awaitable[ResultT]]


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


def movement_replay(r: CreditsRepositories) -> Replay[Movement]:
    async def replay(stored: str) -> Movement:
        entry = await r.ledger.get(json.loads(stored)["entry"])
        assert entry is not None, "a remembered grant or deduction has its ledger entry"
        return Movement(entry, _balance_of(entry.wallet_address, stored))

    return replay


def hold_replay(r: CreditsRepositories, now: datetime) -> Replay[Hold]:
    """The same reservation in its current state, with the balance the first call returned."""

    async def replay(stored: str) -> Hold:
        reservation = await r.reservations.get(json.loads(stored)["reservation"])
        assert reservation is not None, "a remembered reservation is never deleted"
        return Hold(reservation.seen_at(now), _balance_of(reservation.wallet_address, stored))

    return replay


def capture_replay(r: CreditsRepositories, now: datetime) -> Replay[Capture]:
    async def replay(stored: str) -> Capture:
        hold = await hold_replay(r, now)(stored)
        entry = await r.ledger.get(json.loads(stored)["entry"])
        assert entry is not None, "a remembered capture has its ledger entry"
        return Capture(hold.reservation, entry, hold.balance)

    return replay
