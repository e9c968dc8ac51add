"""Credits: balances, holds and the ledger, in exact integer micro-credits. No grpc, no sqlalchemy.

A wallet's account keeps `available` and `reserved`; every open hold (HELD) is counted in
`reserved` until it is resolved exactly once: CONFIRMED (part or all captured, the rest released),
ROLLED_BACK (all released) or EXPIRED (all released, by the sweeper or at the next touch). A hold
past its expire time is treated as released by every read, even before anything has swept it.
Each change of a wallet's total (available + reserved) is one ledger entry.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import Enum

from services.core.errors import (
    ErrorDetails,
    FailedPrecondition,
    NotFound,
    PreconditionViolation,
    R3mesError,
)

# The most a wallet may hold, in micro-credits: one wallet's figures always fit an int64 (about
# 9.2 * 10^18), ten wallets' sum may not, so network totals are summed exactly and saturated.
BALANCE_LIMIT = 10**18
INT64_MAX = 2**63 - 1
DEFAULT_TTL = timedelta(seconds=300)


class ReservationState(Enum):
    HELD = "HELD"
    CONFIRMED = "CONFIRMED"
    ROLLED_BACK = "ROLLED_BACK"
    EXPIRED = "EXPIRED"


class LedgerEntryKind(Enum):
    GRANT = "GRANT"
    DEDUCTION = "DEDUCTION"
    CAPTURE = "CAPTURE"


def new_identifier() -> str:
    """An identifier nobody can guess (192 random bits, URL-safe): knowing one reservation's id
    tells nothing about another's."""
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class Account:
    """A wallet's stored account: `reserved` still holds expired holds nobody swept yet."""

    wallet_address: str
    available: int
    reserved: int
    update_time: datetime


@dataclass(frozen=True)
class Balance:
    """What a wallet holds as callers see it: expired holds already count as available."""

    wallet_address: str
    available: int
    reserved: int
    update_time: datetime | None = None

    @property
    def total(self) -> int:
        return self.available + self.reserved

    @classmethod
    def of_stored(
        cls,
        wallet_address: str,
        available: int,
        reserved: int,
        expired_unswept: int,
        update_time: datetime | None,
    ) -> Balance:
        """The stored account seen at a moment: holds past their expire time that nobody has
        swept yet are still in the stored `reserved`, but they are available to the caller."""
        if not 0 <= expired_unswept <= reserved:
            raise ValueError("expired holds cannot exceed what is reserved")
        return cls(
            wallet_address, available + expired_unswept, reserved - expired_unswept, update_time
        )

    @classmethod
    def empty(cls, wallet_address: str) -> Balance:
        """A wallet that never had credits: zero, and no update time."""
        return cls(wallet_address, 0, 0, None)


@dataclass(frozen=True)
class NetworkTotal:
    """Every wallet together, exact: the sums may pass what an int64 holds."""

    available: int
    reserved: int

    @property
    def total(self) -> int:
        return self.available + self.reserved

    @property
    def saturated(self) -> bool:
        """Whether a figure passes INT64_MAX (the total does whenever a part does: both are
        never negative), so the int64 fields of the answer read INT64_MAX instead."""
        return self.total > INT64_MAX


def saturate(value: int) -> int:
    """`value` as an int64 field carries it: at most INT64_MAX."""
    return min(value, INT64_MAX)


@dataclass(frozen=True)
class HeldReservations:
    """The holds still HELD in storage: how many, the oldest's create time (None: no hold),
    and how many are past their expire time (released for readers, not yet swept)."""

    count: int
    oldest_create_time: datetime | None
    past_expiry: int


@dataclass(frozen=True)
class Transitions:
    """What one money move changed in the holds' states: the state its own reservation entered
    (None: it changed none, as a repeat answered from its stored reply does), and how many of
    the wallet's holds past their time it resolved as EXPIRED on the way."""

    entered: ReservationState | None = None
    expired: int = 0


NO_TRANSITION = Transitions()


@dataclass(frozen=True)
class Reservation:
    reservation_id: str
    wallet_address: str
    amount: int
    captured: int
    state: ReservationState
    description: str
    create_time: datetime
    expire_time: datetime
    close_time: datetime | None = None

    def is_live(self, now: datetime) -> bool:
        """Still holding credits at `now`: held and not past its expire time."""
        return self.state is ReservationState.HELD and now < self.expire_time

    def seen_at(self, now: datetime) -> Reservation:
        """The reservation as a caller is told of it at `now`: one that expired unswept is
        EXPIRED, closed at its expire time (as the sweeper will record it)."""
        if self.state is ReservationState.HELD and not self.is_live(now):
            return replace(self, state=ReservationState.EXPIRED, close_time=self.expire_time)
        return self

    def refusal_to_confirm(self, now: datetime, requested: int | None) -> R3mesError | None:
        """Why this reservation cannot be confirmed now, None if it can."""
        state = self.seen_at(now).state
        if state is ReservationState.CONFIRMED:
            return ReservationAlreadyConfirmed(self.reservation_id)
        if state is ReservationState.ROLLED_BACK:
            return ReservationAlreadyRolledBack(self.reservation_id)
        if state is ReservationState.EXPIRED:
            return ReservationExpired(self.reservation_id)
        if requested is not None and requested > self.amount:
            return AmountExceedsReservation(self.reservation_id, requested, self.amount)
        return None

    def refusal_to_roll_back(self) -> R3mesError | None:
        """Why this reservation cannot be rolled back; rolled back or expired ones are returned
        unchanged (their credits are released either way), only a confirmed one refuses."""
        if self.state is ReservationState.CONFIRMED:
            return ReservationAlreadyConfirmed(self.reservation_id)
        return None


def capture_amount(held: int, requested: int | None) -> int:
    """What a confirm takes: all of the hold when no amount is given."""
    return held if requested is None else requested


def expire_time_of(now: datetime, ttl_seconds: int) -> datetime:
    """When a hold made at `now` expires; a ttl of 0 means the default."""
    if ttl_seconds < 0:
        raise ValueError("a ttl is never negative")
    return now + (timedelta(seconds=ttl_seconds) if ttl_seconds else DEFAULT_TTL)


@dataclass(frozen=True)
class LedgerEntry:
    entry_id: str
    sequence: int
    wallet_address: str
    kind: LedgerEntryKind
    delta: int
    balance_after: int
    reservation_id: str | None
    description: str
    create_time: datetime


@dataclass(frozen=True)
class Movement:
    """The result of a grant or deduction: its ledger entry and the balance right after it."""

    entry: LedgerEntry
    balance: Balance


@dataclass(frozen=True)
class Hold:
    """The result of a reserve or rollback: the reservation and the balance right after."""

    reservation: Reservation
    balance: Balance


@dataclass(frozen=True)
class Capture:
    """The result of a confirm."""

    reservation: Reservation
    entry: LedgerEntry
    balance: Balance


class InsufficientCredits(FailedPrecondition):
    reason = "INSUFFICIENT_CREDITS"

    def __init__(self, wallet_address: str, requested: int, available: int) -> None:
        super().__init__(
            f"wallet {wallet_address} has {available} micro-credits available, "
            f"{requested} were asked for",
            details=ErrorDetails(
                metadata={
                    "wallet_address": wallet_address,
                    "available_micro_credits": str(available),
                    "requested_micro_credits": str(requested),
                },
                precondition_violations=[
                    PreconditionViolation(
                        type="INSUFFICIENT_CREDITS",
                        subject=f"wallets/{wallet_address}",
                        description=f"{requested} micro-credits asked, {available} available",
                    )
                ],
            ),
        )


class BalanceLimitExceeded(FailedPrecondition):
    reason = "BALANCE_LIMIT_EXCEEDED"

    def __init__(self, wallet_address: str, amount: int) -> None:
        super().__init__(
            f"granting {amount} micro-credits would take wallet {wallet_address} past "
            f"{BALANCE_LIMIT} micro-credits",
            details=ErrorDetails(
                metadata={
                    "wallet_address": wallet_address,
                    "limit_micro_credits": str(BALANCE_LIMIT),
                }
            ),
        )


class ReservationNotFound(NotFound):
    reason = "RESERVATION_NOT_FOUND"

    def __init__(self, reservation_id: str) -> None:
        super().__init__(
            "no such reservation", details=ErrorDetails(metadata={"reservation_id": reservation_id})
        )


class _ReservationRefusal(FailedPrecondition):
    problem = ""

    def __init__(self, reservation_id: str) -> None:
        super().__init__(
            f"the reservation {self.problem}",
            details=ErrorDetails(metadata={"reservation_id": reservation_id}),
        )


class ReservationExpired(_ReservationRefusal):
    reason = "RESERVATION_EXPIRED"
    problem = "expired; its credits were released"


class ReservationAlreadyConfirmed(_ReservationRefusal):
    reason = "RESERVATION_ALREADY_CONFIRMED"
    problem = "is already confirmed"


class ReservationAlreadyRolledBack(_ReservationRefusal):
    reason = "RESERVATION_ALREADY_ROLLED_BACK"
    problem = "is already rolled back"


class AmountExceedsReservation(FailedPrecondition):
    reason = "AMOUNT_EXCEEDS_RESERVATION"

    def __init__(self, reservation_id: str, requested: int, held: int) -> None:
        super().__init__(
            f"{requested} micro-credits cannot be captured from a hold of {held}",
            details=ErrorDetails(
                metadata={"reservation_id": reservation_id, "reserved_micro_credits": str(held)}
            ),
        )
