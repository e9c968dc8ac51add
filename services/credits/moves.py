"""Money moves: grant, deduct, reserve, confirm, roll back and the sweeper's expiry, each with its
idempotency record and stored reply, its conditional write, its ledger entry and the balance after.

Two ways to run the same move, behind the same methods (`moves_on` picks one):

- `StatementMoves` (PostgreSQL): one call of a function the migration 0002 created, so one round
  trip that is its own transaction, and the wallet's row is locked for that one statement;
- `SequencedMoves` (SQLite, and any bundle of repositories without a database): the same steps
  as statements of one transaction, through the repositories.

Each move that can change a hold's state answers with what it changed (`Moved`): a repeat answered
from its stored reply changed nothing, so the service counts each change once.

The contract tests run both (tests/integration/test_credits_*.py on each engine).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import Row, TextClause, bindparam, text
from sqlalchemy.exc import DBAPIError

from services.core.db import UtcDateTime
from services.core.errors import R3mesError, TransactionConflict
from services.core.idempotency import IdempotencyKeyReused, fingerprint_of
from services.credits.domain import (
    NO_TRANSITION,
    AmountExceedsReservation,
    Balance,
    BalanceLimitExceeded,
    Capture,
    Hold,
    InsufficientCredits,
    LedgerEntry,
    LedgerEntryKind,
    Movement,
    Reservation,
    ReservationAlreadyConfirmed,
    ReservationAlreadyRolledBack,
    ReservationExpired,
    ReservationNotFound,
    ReservationState,
    Transitions,
    capture_amount,
    expire_time_of,
    new_identifier,
)
from services.credits.replays import (
    encode_capture,
    encode_hold,
    encode_movement,
    replayed_capture,
    replayed_hold,
    replayed_movement,
)
from services.credits.repository import CreditsRepositories, LedgerInconsistent

GRANT, DEDUCT, RESERVE = "GrantCredits", "DeductCredits", "ReserveCredits"
CONFIRM, ROLL_BACK = "ConfirmReservation", "RollbackReservation"

ResultT = TypeVar("ResultT")


@dataclass(frozen=True)
class Moved(Generic[ResultT]):
    """A move's answer, and what it changed in the holds' states."""

    result: ResultT
    transitions: Transitions = NO_TRANSITION


class MoneyMoves(Protocol):
    async def grant(
        self, wallet_address: str, amount: int, description: str, key: str, now: datetime
    ) -> Movement: ...

    async def deduct(
        self, wallet_address: str, amount: int, description: str, key: str, now: datetime
    ) -> Moved[Movement]: ...

    async def reserve(
        self,
        wallet_address: str,
        amount: int,
        ttl_seconds: int,
        description: str,
        key: str,
        now: datetime,
    ) -> Moved[Hold]: ...

    async def confirm(
        self, reservation_id: str, amount: int | None, key: str, now: datetime
    ) -> Moved[Capture]: ...

    async def roll_back(self, reservation_id: str, key: str, now: datetime) -> Moved[Hold]: ...

    async def expire_due(self, now: datetime, limit: int) -> int:
        """Resolve up to `limit` holds past their time as EXPIRED and release their credits;
        how many. Safe beside sweepers of other replicas."""
        ...


def moves_on(repositories: CreditsRepositories) -> MoneyMoves:
    if repositories.moves_in_one_statement:
        return StatementMoves(repositories)
    return SequencedMoves(repositories)


# What each call's idempotency fingerprint is made of (a repeat with other values is refused).
def _movement_parameters(wallet_address: str, amount: int, description: str) -> dict[str, object]:
    return {"wallet": wallet_address, "amount": amount, "description": description}


def _hold_parameters(
    wallet_address: str, amount: int, ttl_seconds: int, description: str
) -> dict[str, object]:
    return {
        "wallet": wallet_address,
        "amount": amount,
        "ttl_seconds": ttl_seconds,
        "description": description,
    }


_TIMES = ("now", "expire_time")


def _call(function: str, *parameters: str) -> TextClause:
    # `__[SCHEMA_credits]` is the token SQLAlchemy's schema_translate_map rewrites in every
    # compiled statement, text included: the function is found in this run's credits schema
    # (a suffixed one in tests and benchmarks) as the tables are.
    arguments = ", ".join(f":{name}" for name in parameters)
    # Names of ours, never input.
    statement = text(f"SELECT * FROM __[SCHEMA_credits].{function}({arguments})")  # noqa: S608
    # Times pass through the same type as the tables' columns: UTC, a naive one refused.
    times = [bindparam(name, type_=UtcDateTime) for name in parameters if name in _TIMES]
    return statement.bindparams(*times)


_GRANT = _call("grant_credits", "wallet", "amount", "description", "key", "fp", "entry", "now")
_DEDUCT = _call("deduct_credits", "wallet", "amount", "description", "key", "fp", "entry", "now")
_RESERVE = _call(
    "reserve_credits",
    "wallet",
    "amount",
    "expire_time",
    "description",
    "key",
    "fp",
    "reservation",
    "now",
)
_CONFIRM = _call("confirm_reservation", "reservation", "capture", "key", "fp", "entry", "now")
_ROLL_BACK = _call("roll_back_reservation", "reservation", "key", "fp", "now")
_EXPIRE_DUE = _call("expire_due", "now", "limit")

REFUSAL_SQLSTATE = "R3001"  # a refusal the caller is told, its reason as the message
INCONSISTENT_SQLSTATE = "R3002"  # an account disagreeing with its holds: a bug


class StatementMoves:
    """Each move as one statement: a call of its PostgreSQL function (migration 0002)."""

    def __init__(self, repositories: CreditsRepositories) -> None:
        # Any repository of the bundle runs a statement on the unit of work's connection.
        self._statements = repositories.accounts

    async def grant(
        self, wallet_address: str, amount: int, description: str, key: str, now: datetime
    ) -> Movement:
        moved = await self._move(_GRANT, GRANT, wallet_address, amount, description, key, now)
        return moved.result

    async def deduct(
        self, wallet_address: str, amount: int, description: str, key: str, now: datetime
    ) -> Moved[Movement]:
        return await self._move(_DEDUCT, DEDUCT, wallet_address, amount, description, key, now)

    async def _move(
        self,
        statement: TextClause,
        scope: str,
        wallet_address: str,
        amount: int,
        description: str,
        key: str,
        now: datetime,
    ) -> Moved[Movement]:
        """A grant or a deduction: the same shape of call, another function and scope."""
        parameters = _movement_parameters(wallet_address, amount, description)
        row = await self._one(
            statement,
            {**parameters, "key": key, "fp": fingerprint_of(scope, parameters)},
            {"entry": new_identifier(), "now": now},
            _Refused(scope, key, wallet_address=wallet_address, amount=amount),
        )
        return Moved(_movement(row), _transitions(row))

    async def reserve(
        self,
        wallet_address: str,
        amount: int,
        ttl_seconds: int,
        description: str,
        key: str,
        now: datetime,
    ) -> Moved[Hold]:
        parameters = _hold_parameters(wallet_address, amount, ttl_seconds, description)
        row = await self._one(
            _RESERVE,
            {
                "wallet": wallet_address,
                "amount": amount,
                "expire_time": expire_time_of(now, ttl_seconds),
                "description": description,
                "key": key,
                "fp": fingerprint_of(RESERVE, parameters),
            },
            {"reservation": new_identifier(), "now": now},
            _Refused(RESERVE, key, wallet_address=wallet_address, amount=amount),
        )
        return Moved(_hold(row, now), _transitions(row))

    async def confirm(
        self, reservation_id: str, amount: int | None, key: str, now: datetime
    ) -> Moved[Capture]:
        parameters = {"reservation_id": reservation_id, "amount": amount}
        row = await self._one(
            _CONFIRM,
            {
                "reservation": reservation_id,
                "capture": amount,
                "key": key,
                "fp": fingerprint_of(CONFIRM, parameters),
            },
            {"entry": new_identifier(), "now": now},
            _Refused(CONFIRM, key, reservation_id=reservation_id, amount=amount),
        )
        hold = _hold(row, now)
        entry = _entry(row)
        assert entry is not None, "a confirm answers with its ledger entry"
        return Moved(Capture(hold.reservation, entry, hold.balance), _transitions(row))

    async def roll_back(self, reservation_id: str, key: str, now: datetime) -> Moved[Hold]:
        parameters = {"reservation_id": reservation_id}
        row = await self._one(
            _ROLL_BACK,
            {
                "reservation": reservation_id,
                "key": key,
                "fp": fingerprint_of(ROLL_BACK, parameters),
            },
            {"now": now},
            _Refused(ROLL_BACK, key, reservation_id=reservation_id),
        )
        return Moved(_hold(row, now), _transitions(row))

    async def expire_due(self, now: datetime, limit: int) -> int:
        result = await self._statements.execute(_EXPIRE_DUE, [{"now": now, "limit": limit}])
        return int(result.scalar_one())

    async def _one(
        self,
        statement: TextClause,
        asked: Mapping[str, Any],
        made: Mapping[str, Any],
        refused: _Refused,
    ) -> Row[Any]:
        try:
            result = await self._statements.execute(statement, [{**asked, **made}])
        except DBAPIError as exc:
            raise refused.as_error(exc) or exc from exc
        return result.one()


class _Refused:
    """What a refusal raised by a function means to the caller, with the call's own figures."""

    def __init__(
        self,
        scope: str,
        key: str,
        *,
        wallet_address: str = "",
        reservation_id: str = "",
        amount: int | None = None,
    ) -> None:
        self._scope, self._key = scope, key
        self._wallet, self._reservation, self._amount = wallet_address, reservation_id, amount

    def as_error(self, exc: DBAPIError) -> Exception | None:
        cause = exc.orig.__cause__ if exc.orig is not None else None
        sqlstate = getattr(exc.orig, "sqlstate", None)
        if sqlstate == INCONSISTENT_SQLSTATE:
            return LedgerInconsistent(str(getattr(cause, "message", "")))
        if sqlstate != REFUSAL_SQLSTATE:
            return None
        reason, figure = getattr(cause, "message", ""), getattr(cause, "detail", None)
        amount = self._amount or 0
        refusals: dict[str, R3mesError] = {
            "IDEMPOTENCY_KEY_REUSED": IdempotencyKeyReused(self._scope, self._key),
            "BALANCE_LIMIT_EXCEEDED": BalanceLimitExceeded(self._wallet, amount),
            "RESERVATION_NOT_FOUND": ReservationNotFound(self._reservation),
            "RESERVATION_EXPIRED": ReservationExpired(self._reservation),
            "RESERVATION_ALREADY_CONFIRMED": ReservationAlreadyConfirmed(self._reservation),
            "RESERVATION_ALREADY_ROLLED_BACK": ReservationAlreadyRolledBack(self._reservation),
        }
        if reason == "INSUFFICIENT_CREDITS":
            return InsufficientCredits(self._wallet, amount, int(figure or 0))
        if reason == "AMOUNT_EXCEEDS_RESERVATION":
            return AmountExceedsReservation(self._reservation, amount, int(figure or 0))
        return refusals.get(reason)


def _reservation(row: Row[Any]) -> Reservation | None:
    if row.r_id is None:
        return None
    return Reservation(
        reservation_id=row.r_id,
        wallet_address=row.r_wallet_address,
        amount=row.r_amount,
        captured=row.r_captured,
        state=ReservationState(row.r_state),
        description=row.r_description,
        create_time=row.r_create_time,
        expire_time=row.r_expire_time,
        close_time=row.r_close_time,
    )


def _entry(row: Row[Any]) -> LedgerEntry | None:
    if row.e_id is None:
        return None
    return LedgerEntry(
        entry_id=row.e_id,
        sequence=row.e_sequence,
        wallet_address=row.e_wallet_address,
        kind=LedgerEntryKind(row.e_kind),
        delta=row.e_delta,
        balance_after=row.e_balance_after,
        reservation_id=row.e_reservation_id,
        description=row.e_description,
        create_time=row.e_create_time,
    )


def _transitions(row: Row[Any]) -> Transitions:
    """What the call changed (migration 0004's columns): nothing, for a repeat."""
    entered = None if row.t_state is None else ReservationState(row.t_state)
    return Transitions(entered, row.t_expired)


def _balance(wallet_address: str, row: Row[Any]) -> Balance:
    """The balance the first call returned: a repeat is answered the same."""
    return Balance(wallet_address, row.b_available, row.b_reserved, row.b_update_time)


def _movement(row: Row[Any]) -> Movement:
    entry = _entry(row)
    assert entry is not None, "a grant or deduction answers with its ledger entry"
    return Movement(entry, _balance(entry.wallet_address, row))


def _hold(row: Row[Any], now: datetime) -> Hold:
    """The reservation as it is now (a repeated reserve of a hold confirmed since shows it
    CONFIRMED), with the balance the first call returned."""
    reservation = _reservation(row)
    assert reservation is not None, "a reserve, confirm or rollback answers with its hold"
    return Hold(reservation.seen_at(now), _balance(reservation.wallet_address, row))


class SequencedMoves:
    """Each move as statements of one transaction, through the repositories."""

    def __init__(self, repositories: CreditsRepositories) -> None:
        self._r = repositories

    async def grant(
        self, wallet_address: str, amount: int, description: str, key: str, now: datetime
    ) -> Movement:
        r = self._r
        parameters = _movement_parameters(wallet_address, amount, description)
        replay = await r.idempotency.claim(GRANT, key, parameters, now)
        if replay is not None:
            return await replayed_movement(r, replay)
        account = await r.accounts.add(wallet_address, amount, now)
        if account is None:
            raise BalanceLimitExceeded(wallet_address, amount)
        entry = await r.ledger.append(
            new_identifier(), account, LedgerEntryKind.GRANT, amount, description, now
        )
        movement = Movement(entry, await r.accounts.balance(wallet_address, now))
        await r.idempotency.record(GRANT, key, encode_movement(movement))
        return movement

    async def deduct(
        self, wallet_address: str, amount: int, description: str, key: str, now: datetime
    ) -> Moved[Movement]:
        r = self._r
        parameters = _movement_parameters(wallet_address, amount, description)
        replay = await r.idempotency.claim(DEDUCT, key, parameters, now)
        if replay is not None:
            return Moved(await replayed_movement(r, replay))
        expired = 0
        account = await r.accounts.take(wallet_address, amount, now)
        if account is None:
            expired = await self._release_expired(wallet_address, now)
            if expired:
                account = await r.accounts.take(wallet_address, amount, now)
        if account is None:
            available = (await r.accounts.balance(wallet_address, now)).available
            raise InsufficientCredits(wallet_address, amount, available)
        entry = await r.ledger.append(
            new_identifier(), account, LedgerEntryKind.DEDUCTION, -amount, description, now
        )
        movement = Movement(entry, await r.accounts.balance(wallet_address, now))
        await r.idempotency.record(DEDUCT, key, encode_movement(movement))
        return Moved(movement, Transitions(expired=expired))

    async def reserve(
        self,
        wallet_address: str,
        amount: int,
        ttl_seconds: int,
        description: str,
        key: str,
        now: datetime,
    ) -> Moved[Hold]:
        r = self._r
        parameters = _hold_parameters(wallet_address, amount, ttl_seconds, description)
        replay = await r.idempotency.claim(RESERVE, key, parameters, now)
        if replay is not None:
            return Moved(await replayed_hold(r, replay, now))
        # The hold is written first, so the wallet's row stays locked (from the conditional
        # write to the commit) as briefly as possible; a refusal rolls it back with the rest.
        reservation = await r.reservations.add(
            Reservation(
                reservation_id=new_identifier(),
                wallet_address=wallet_address,
                amount=amount,
                captured=0,
                state=ReservationState.HELD,
                description=description,
                create_time=now,
                expire_time=expire_time_of(now, ttl_seconds),
            )
        )
        # The one conditional write; only when it fails is it worth releasing holds that
        # expired unswept (every read counts them as available already) and trying again.
        expired = 0
        held = await r.accounts.hold(wallet_address, amount, now)
        if held is None:
            expired = await self._release_expired(wallet_address, now)
            if expired:
                held = await r.accounts.hold(wallet_address, amount, now)
        if held is None:
            available = (await r.accounts.balance(wallet_address, now)).available
            raise InsufficientCredits(wallet_address, amount, available)
        hold = Hold(reservation, await r.accounts.balance(wallet_address, now))
        await r.idempotency.record(RESERVE, key, encode_hold(hold))
        return Moved(hold, Transitions(ReservationState.HELD, expired))

    async def confirm(
        self, reservation_id: str, amount: int | None, key: str, now: datetime
    ) -> Moved[Capture]:
        r = self._r
        parameters = {"reservation_id": reservation_id, "amount": amount}
        replay = await r.idempotency.claim(CONFIRM, key, parameters, now)
        if replay is not None:
            return Moved(await replayed_capture(r, replay, now))
        reservation = await r.reservations.confirm(reservation_id, amount, now)
        if reservation is None:
            raise await self._refusal_to_confirm(reservation_id, amount, now)
        wallet = reservation.wallet_address
        captured = capture_amount(reservation.amount, amount)
        account = await r.accounts.release(wallet, reservation.amount, captured, now)
        entry = await r.ledger.append(
            new_identifier(),
            account,
            LedgerEntryKind.CAPTURE,
            -captured,
            reservation.description,
            now,
            reservation_id=reservation_id,
        )
        capture = Capture(reservation, entry, await r.accounts.balance(wallet, now))
        await r.idempotency.record(CONFIRM, key, encode_capture(capture))
        return Moved(capture, Transitions(ReservationState.CONFIRMED))

    async def roll_back(self, reservation_id: str, key: str, now: datetime) -> Moved[Hold]:
        r = self._r
        parameters = {"reservation_id": reservation_id}
        replay = await r.idempotency.claim(ROLL_BACK, key, parameters, now)
        if replay is not None:
            return Moved(await replayed_hold(r, replay, now))
        reservation = await r.reservations.roll_back(reservation_id, now)
        if reservation is None:
            reservation, entered = await self._already_released(reservation_id, now)
        else:
            await r.accounts.release(reservation.wallet_address, reservation.amount, 0, now)
            entered = ReservationState.ROLLED_BACK
        hold = Hold(reservation, await r.accounts.balance(reservation.wallet_address, now))
        await r.idempotency.record(ROLL_BACK, key, encode_hold(hold))
        return Moved(hold, Transitions(entered))

    async def expire_due(self, now: datetime, limit: int) -> int:
        due = await self._r.reservations.due_for_expiry(now, limit)
        if not due:
            return 0
        expired = await self._r.reservations.expire_these(due, now)
        await self._release_all(expired, now)
        return len(expired)

    async def _release_expired(self, wallet_address: str, now: datetime) -> int:
        """Resolve the wallet's expired holds now, as the sweeper would; how many were."""
        expired = await self._r.reservations.expire_of_wallet(wallet_address, now)
        await self._release_all(expired, now)
        return len(expired)

    async def _release_all(self, expired: list[Reservation], now: datetime) -> None:
        held_by: dict[str, int] = defaultdict(int)
        for reservation in expired:
            held_by[reservation.wallet_address] += reservation.amount
        # Accounts in one order, so two units releasing the same wallets never wait on each
        # other in a cycle.
        for wallet in sorted(held_by):
            await self._r.accounts.release(wallet, held_by[wallet], 0, now)

    async def _refusal_to_confirm(
        self, reservation_id: str, amount: int | None, now: datetime
    ) -> R3mesError:
        stored = await self._r.reservations.get(reservation_id)
        refusal = stored.refusal_to_confirm(now, amount)
        # None: it changed between the write and this read; the kernel runs the unit again.
        return refusal or TransactionConflict("the reservation changed meanwhile; retry")

    async def _already_released(
        self, reservation_id: str, now: datetime
    ) -> tuple[Reservation, ReservationState | None]:
        """A rollback of a hold that is no longer live: rolled back or expired ones come back as
        they are (no change); one that expired unswept is resolved as EXPIRED now, releasing its
        credits. With the state it entered, if any."""
        stored = await self._r.reservations.get(reservation_id)
        refusal = stored.refusal_to_roll_back()
        if refusal is not None:
            raise refusal
        if stored.state is not ReservationState.HELD:
            return stored, None
        expired = await self._r.reservations.expire_these([reservation_id], now)
        if not expired:
            raise TransactionConflict("the reservation changed meanwhile; retry")
        await self._release_all(expired, now)
        return expired[0], ReservationState.EXPIRED
