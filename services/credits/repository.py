"""Queries of the credits schema. Every change of money is one conditional UPDATE ... RETURNING:
the database checks and writes in one step, so no concurrent caller can slip in between.

The statements of every reserve and confirm (hold, release, balance, confirm) are built once at
import with bound parameters: building one cost about as much CPU as the round trip it makes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    BindParameter,
    ColumnElement,
    Row,
    String,
    bindparam,
    case,
    cast,
    func,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from services.core.db import UtcDateTime
from services.core.idempotency import IdempotencyRepository
from services.core.outbox import OutboxRepository
from services.core.pagination import Page, PageRequest
from services.core.repository import BaseRepository
from services.credits import tables
from services.credits.domain import (
    BALANCE_LIMIT,
    Account,
    Balance,
    HeldReservations,
    LedgerEntry,
    LedgerEntryKind,
    NetworkTotal,
    Reservation,
    ReservationNotFound,
    ReservationState,
)

HELD = ReservationState.HELD.value
_accounts = tables.accounts
_reservations = tables.reservations


class LedgerInconsistent(RuntimeError):
    """A stored account disagrees with its reservations: a bug, never a caller's fault. The unit
    of work rolls back, so nothing of the call is stored, and the caller gets INTERNAL."""


def _expired_holds(now: datetime | BindParameter[datetime], *where: ColumnElement[bool]) -> Any:
    """Σ of held amounts past their expire time: still in the stored `reserved`, but released
    for every reader."""
    # PostgreSQL sums bigints as numeric; one wallet's sum fits a bigint (the balance limit).
    return (
        select(cast(func.coalesce(func.sum(_reservations.c.amount), 0), BigInteger))
        .where(_reservations.c.state == HELD, _reservations.c.expire_time <= now, *where)
        .scalar_subquery()
    )


# Sums over every wallet may pass 2^63. SQLite's sum() then fails ("integer overflow") and it has
# no wider integer, so each value (at most 10^18 < 2^60, never negative) is summed as two halves
# that cannot overflow below 2^31 rows, and joined exactly in Python. PostgreSQL sums bigints as
# numeric anyway; the same statement serves both.
_HALF = 2**32


def _wide_sum(column: ColumnElement[int], name: str) -> tuple[Any, Any]:
    return (
        func.coalesce(func.sum(column // _HALF), 0).label(f"{name}_high"),
        func.coalesce(func.sum(column % _HALF), 0).label(f"{name}_low"),
    )


def _joined(row: Row[Any], name: str) -> int:
    mapping = row._mapping
    return int(mapping[f"{name}_high"]) * _HALF + int(mapping[f"{name}_low"])


def _account_change(*where: ColumnElement[bool], **values: Any) -> Any:
    return update(_accounts).where(*where).values(values).returning(_accounts)


_a, _r = _accounts.c, _reservations.c
_WALLET: BindParameter[str] = bindparam("wallet", type_=String)
_AMOUNT: BindParameter[int] = bindparam("amount", type_=BigInteger)
_HELD: BindParameter[int] = bindparam("held", type_=BigInteger)
_CAPTURED: BindParameter[int] = bindparam("captured", type_=BigInteger)
_CAPTURE: BindParameter[int] = bindparam("capture", type_=BigInteger)
_NOW: BindParameter[datetime] = bindparam("now", type_=UtcDateTime)
# (Bound parameters may not be named as a column of the table an UPDATE writes.)
_HOLD = _account_change(
    _a.wallet_address == _WALLET,
    _a.available >= _AMOUNT,
    available=_a.available - _AMOUNT,
    reserved=_a.reserved + _AMOUNT,
    update_time=_NOW,
)
_RELEASE = _account_change(
    _a.wallet_address == _WALLET,
    _a.reserved >= _HELD,
    reserved=_a.reserved - _HELD,
    available=_a.available + (_HELD - _CAPTURED),
    update_time=_NOW,
)
_BALANCE = select(
    _a.available,
    _a.reserved,
    _a.update_time,
    _expired_holds(_NOW, _r.wallet_address == _a.wallet_address).label("expired"),
).where(_a.wallet_address == _WALLET)


class AccountRepository(BaseRepository[Account]):
    table = _accounts

    def to_domain(self, row: Row[Any]) -> Account:
        return Account(row.wallet_address, row.available, row.reserved, row.update_time)

    async def hold(self, wallet_address: str, amount: int, now: datetime) -> Account | None:
        """Move `amount` from available to reserved if that much is available; None if not."""
        rows = await self.fetch(_HOLD, {"wallet": wallet_address, "amount": amount, "now": now})
        return rows[0] if rows else None

    async def take(self, wallet_address: str, amount: int, now: datetime) -> Account | None:
        """Take `amount` out of available if that much is available; None if not."""
        c = self.table.c
        rows = await self.update_returning(
            c.wallet_address == wallet_address,
            c.available >= amount,
            values={"available": c.available - amount, "update_time": now},
        )
        return rows[0] if rows else None

    async def add(self, wallet_address: str, amount: int, now: datetime) -> Account | None:
        """Add `amount` to available unless the total would pass the limit; None if it would."""
        await self.insert_or_ignore(
            {"wallet_address": wallet_address, "available": 0, "reserved": 0, "update_time": now}
        )
        c = self.table.c
        rows = await self.update_returning(
            c.wallet_address == wallet_address,
            c.available + c.reserved <= BALANCE_LIMIT - amount,
            values={"available": c.available + amount, "update_time": now},
        )
        return rows[0] if rows else None

    async def release(
        self, wallet_address: str, held: int, captured: int, now: datetime
    ) -> Account:
        """A hold of `held` ends: `captured` leaves the wallet, the rest is available again."""
        parameters = {"wallet": wallet_address, "held": held, "captured": captured, "now": now}
        rows = await self.fetch(_RELEASE, parameters)
        if not rows:
            raise LedgerInconsistent(f"the account holds less than a hold of {held} it had")
        return rows[0]

    async def balance(self, wallet_address: str, now: datetime) -> Balance:
        """The wallet's balance as callers see it at `now`, in one statement (one snapshot, so a
        sweeper committing meanwhile cannot make a hold count twice or not at all)."""
        row = (await self.execute(_BALANCE, [{"wallet": wallet_address, "now": now}])).one_or_none()
        if row is None:
            return Balance.empty(wallet_address)
        return Balance.of_stored(
            wallet_address, row.available, row.reserved, row.expired, row.update_time
        )

    async def network_total(self, now: datetime) -> NetworkTotal:
        """Every wallet together, exact, in one statement (one snapshot)."""
        c = self.table.c
        accounts = select(*_wide_sum(c.available, "available"), *_wide_sum(c.reserved, "reserved"))
        expired = select(*_wide_sum(_r.amount, "expired")).where(
            _r.state == HELD, _r.expire_time <= now
        )
        sums = accounts.subquery()
        holds = expired.subquery()
        row = (await self.execute(select(sums, holds).select_from(sums.join(holds, true())))).one()
        expired_sum = _joined(row, "expired")
        return NetworkTotal(
            _joined(row, "available") + expired_sum, _joined(row, "reserved") - expired_sum
        )


def _live_hold_change(*where: ColumnElement[bool], **values: Any) -> Any:
    live = (
        _r.reservation_id == bindparam("id"),
        _r.state == HELD,
        _r.expire_time > _NOW,
    )
    return update(_reservations).where(*live, *where).values(values).returning(_reservations)


_CONFIRMED, _ROLLED_BACK = ReservationState.CONFIRMED.value, ReservationState.ROLLED_BACK.value
_CONFIRM_ALL = _live_hold_change(state=_CONFIRMED, captured=_r.amount, close_time=_NOW)
_CONFIRM_PART = _live_hold_change(
    _r.amount >= _CAPTURE, state=_CONFIRMED, captured=_CAPTURE, close_time=_NOW
)
_ROLL_BACK = _live_hold_change(state=_ROLLED_BACK, close_time=_NOW)


class ReservationRepository(BaseRepository[Reservation]):
    table = _reservations

    def to_domain(self, row: Row[Any]) -> Reservation:
        return Reservation(
            reservation_id=row.reservation_id,
            wallet_address=row.wallet_address,
            amount=row.amount,
            captured=row.captured,
            state=ReservationState(row.state),
            description=row.description,
            create_time=row.create_time,
            expire_time=row.expire_time,
            close_time=row.close_time,
        )

    async def add(self, reservation: Reservation) -> Reservation:
        return await self.insert(
            {
                "reservation_id": reservation.reservation_id,
                "wallet_address": reservation.wallet_address,
                "amount": reservation.amount,
                "captured": reservation.captured,
                "state": reservation.state.value,
                "description": reservation.description,
                "create_time": reservation.create_time,
                "expire_time": reservation.expire_time,
                "close_time": reservation.close_time,
            }
        )

    async def get(self, reservation_id: str) -> Reservation:
        reservation = await self.find(reservation_id=reservation_id)
        if reservation is None:
            raise ReservationNotFound(reservation_id)
        return reservation

    async def confirm(
        self, reservation_id: str, capture: int | None, now: datetime
    ) -> Reservation | None:
        """Resolve a live hold as CONFIRMED, capturing `capture` (all of it when None); None if
        it is not live or holds less (another caller resolved it first, or it expired)."""
        parameters: dict[str, Any] = {"id": reservation_id, "now": now}
        if capture is None:
            rows = await self.fetch(_CONFIRM_ALL, parameters)
        else:
            rows = await self.fetch(_CONFIRM_PART, {**parameters, "capture": capture})
        return rows[0] if rows else None

    async def roll_back(self, reservation_id: str, now: datetime) -> Reservation | None:
        """Resolve a live hold as ROLLED_BACK; None if it is not live."""
        rows = await self.fetch(_ROLL_BACK, {"id": reservation_id, "now": now})
        return rows[0] if rows else None

    async def expire_of_wallet(self, wallet_address: str, now: datetime) -> list[Reservation]:
        """Resolve as EXPIRED the wallet's holds that are past their time."""
        return await self._expire(self.table.c.wallet_address == wallet_address, now=now)

    async def expire_these(self, reservation_ids: list[str], now: datetime) -> list[Reservation]:
        """Resolve as EXPIRED those of these holds that are still held and past their time."""
        return await self._expire(self.table.c.reservation_id.in_(reservation_ids), now=now)

    async def _expire(self, *where: ColumnElement[bool], now: datetime) -> list[Reservation]:
        # Each hold is resolved once even when sweepers of several replicas meet it together:
        # the condition on HELD is checked again under the row lock.
        c = self.table.c
        return await self.update_returning(
            *where,
            c.state == HELD,
            c.expire_time <= now,
            # Closed when it expired, not when it was noticed: the same for every replica.
            values={"state": ReservationState.EXPIRED.value, "close_time": c.expire_time},
        )

    async def held(self, now: datetime) -> HeldReservations:
        """One statement over the HELD rows only (the state's index), never the closed ones."""
        c = self.table.c
        statement = select(
            func.count(),
            func.min(c.create_time),
            func.coalesce(func.sum(case((c.expire_time <= now, 1), else_=0)), 0),
        ).where(c.state == HELD)
        count, oldest, past_expiry = tuple((await self.execute(statement)).one())
        return HeldReservations(int(count), oldest, int(past_expiry))

    async def count_by_state(self) -> dict[ReservationState, int]:
        """How many reservations storage holds in each state (0 for a state none is in): one
        grouped count, read off the state's index (reservations are never deleted, so it grows
        with them)."""
        c = self.table.c
        statement = select(c.state, func.count().label("reservations")).group_by(c.state)
        counts = dict.fromkeys(ReservationState, 0)
        for row in await self.execute(statement):
            counts[ReservationState(row.state)] = int(row.reservations)
        return counts

    async def due_for_expiry(self, now: datetime, limit: int) -> list[str]:
        """Ids of up to `limit` expired holds, locked; those another sweeper has locked are
        skipped (SKIP LOCKED on PostgreSQL; SQLite's write lock already lets one in at a time)."""
        c = self.table.c
        statement = (
            select(c.reservation_id)
            .where(c.state == HELD, c.expire_time <= now)
            .order_by(c.expire_time)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [row.reservation_id for row in await self.execute(statement)]


class LedgerRepository(BaseRepository[LedgerEntry]):
    table = tables.ledger_entries

    def to_domain(self, row: Row[Any]) -> LedgerEntry:
        return LedgerEntry(
            entry_id=row.entry_id,
            sequence=row.sequence,
            wallet_address=row.wallet_address,
            kind=LedgerEntryKind(row.kind),
            delta=row.delta,
            balance_after=row.balance_after,
            reservation_id=row.reservation_id,
            description=row.description,
            create_time=row.create_time,
        )

    async def append(
        self,
        entry_id: str,
        account: Account,
        kind: LedgerEntryKind,
        delta: int,
        description: str,
        now: datetime,
        reservation_id: str | None = None,
    ) -> LedgerEntry:
        """Record a change of the wallet's total, with the total right after it."""
        return await self.insert(
            {
                "entry_id": entry_id,
                "wallet_address": account.wallet_address,
                "kind": kind.value,
                "delta": delta,
                "balance_after": account.available + account.reserved,
                "reservation_id": reservation_id,
                "description": description,
                "create_time": now,
            }
        )

    async def of_wallet(self, wallet_address: str, page: PageRequest) -> Page[LedgerEntry]:
        """Newest first; `sequence` is unique and grows with every entry."""
        c = self.table.c
        return await self.page(
            c.wallet_address == wallet_address,
            key=[c.sequence],
            size=page.size,
            after=page.after,
            descending=True,
        )


class CreditsIdempotency(IdempotencyRepository):
    table = tables.idempotency_keys


class CreditsOutbox(OutboxRepository):
    table = tables.outbox


@dataclass(frozen=True)
class CreditsRepositories:
    """Every repository of the credits schema, on one unit of work's connection."""

    accounts: AccountRepository
    reservations: ReservationRepository
    ledger: LedgerRepository
    idempotency: CreditsIdempotency
    outbox: CreditsOutbox
    # Whether the money moves' functions (migration 0002, PostgreSQL) can be called on this
    # connection, each move one statement (services/credits/moves.py); if not, the moves run as
    # statements of the repositories above.
    moves_in_one_statement: bool = False

    @classmethod
    def on(cls, connection: AsyncConnection) -> CreditsRepositories:
        return cls(
            accounts=AccountRepository(connection),
            reservations=ReservationRepository(connection),
            ledger=LedgerRepository(connection),
            idempotency=CreditsIdempotency(connection),
            outbox=CreditsOutbox(connection),
            moves_in_one_statement=connection.dialect.name == "postgresql",
        )
