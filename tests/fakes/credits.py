"""The credits service's repositories in memory: each conditional write checks and changes the
stored dataclasses as the real statement does (services/credits/repository.py)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from services.core.errors import AlreadyExists
from services.core.idempotency import StoredKey
from services.core.pagination import Page, PageRequest
from services.credits.domain import (
    BALANCE_LIMIT,
    Account,
    Balance,
    LedgerEntry,
    LedgerEntryKind,
    NetworkTotal,
    Reservation,
    ReservationState,
)
from services.credits.repository import (
    AccountRepository,
    CreditsIdempotency,
    CreditsOutbox,
    CreditsRepositories,
    LedgerInconsistent,
    LedgerRepository,
    ReservationRepository,
)
from tests.fakes.idempotency import KeysInMemory
from tests.fakes.outbox import OutboxInMemory, OutboxRows
from tests.fakes.uow import FakeUnitOfWork, found_by, keyset_page

HELD = ReservationState.HELD


@dataclass
class CreditsState:
    accounts: dict[str, Account] = field(default_factory=dict)
    reservations: dict[str, Reservation] = field(default_factory=dict)
    ledger: list[LedgerEntry] = field(default_factory=list)
    keys: dict[tuple[str, str], StoredKey] = field(default_factory=dict)
    outbox: OutboxRows = field(default_factory=OutboxRows)

    def expired_holds(self, now: datetime, wallet_address: str | None = None) -> int:
        """Σ of held amounts past their expire time: stored as reserved, released to readers."""
        return sum(
            hold.amount
            for hold in self.reservations.values()
            if hold.state is HELD
            and hold.expire_time <= now
            and wallet_address in (None, hold.wallet_address)
        )


class FakeAccounts(AccountRepository):
    def __init__(self, state: CreditsState) -> None:
        self._state = state

    def _change(self, wallet_address: str, now: datetime, available: int, reserved: int) -> Account:
        account = replace(
            self._state.accounts[wallet_address],
            available=available,
            reserved=reserved,
            update_time=now,
        )
        self._state.accounts[wallet_address] = account
        return account

    async def hold(self, wallet_address: str, amount: int, now: datetime) -> Account | None:
        account = self._state.accounts.get(wallet_address)
        if account is None or account.available < amount:
            return None
        available, reserved = account.available - amount, account.reserved + amount
        return self._change(wallet_address, now, available, reserved)

    async def take(self, wallet_address: str, amount: int, now: datetime) -> Account | None:
        account = self._state.accounts.get(wallet_address)
        if account is None or account.available < amount:
            return None
        return self._change(wallet_address, now, account.available - amount, account.reserved)

    async def add(self, wallet_address: str, amount: int, now: datetime) -> Account | None:
        account = self._state.accounts.setdefault(
            wallet_address, Account(wallet_address, 0, 0, now)
        )
        if account.available + account.reserved > BALANCE_LIMIT - amount:
            return None
        return self._change(wallet_address, now, account.available + amount, account.reserved)

    async def release(
        self, wallet_address: str, held: int, captured: int, now: datetime
    ) -> Account:
        account = self._state.accounts.get(wallet_address)
        if account is None or account.reserved < held:
            raise LedgerInconsistent(f"the account holds less than a hold of {held} it had")
        available = account.available + held - captured
        return self._change(wallet_address, now, available, account.reserved - held)

    async def balance(self, wallet_address: str, now: datetime) -> Balance:
        account = self._state.accounts.get(wallet_address)
        if account is None:
            return Balance.empty(wallet_address)
        expired = self._state.expired_holds(now, wallet_address)
        return Balance.of_stored(
            wallet_address, account.available, account.reserved, expired, account.update_time
        )

    async def network_total(self, now: datetime) -> NetworkTotal:
        accounts = self._state.accounts.values()
        expired = self._state.expired_holds(now)
        available = sum(account.available for account in accounts)
        reserved = sum(account.reserved for account in accounts)
        return NetworkTotal(available + expired, reserved - expired)


class FakeReservations(ReservationRepository):
    def __init__(self, state: CreditsState) -> None:
        self._holds = state.reservations

    async def add(self, reservation: Reservation) -> Reservation:
        if reservation.reservation_id in self._holds:
            raise AlreadyExists("the record already exists")
        self._holds[reservation.reservation_id] = reservation
        return reservation

    async def find(self, *, for_update: bool = False, **equal_to: Any) -> Reservation | None:
        """By id only, the one lookup the repository's `get` makes."""
        (reservation_id,) = found_by(equal_to, "reservation_id")
        return self._holds.get(reservation_id)

    def _live(self, reservation_id: str, now: datetime) -> Reservation | None:
        hold = self._holds.get(reservation_id)
        return hold if hold is not None and hold.is_live(now) else None

    async def confirm(
        self, reservation_id: str, capture: int | None, now: datetime
    ) -> Reservation | None:
        hold = self._live(reservation_id, now)
        if hold is None or (capture is not None and hold.amount < capture):
            return None
        captured = hold.amount if capture is None else capture
        confirmed = replace(
            hold, state=ReservationState.CONFIRMED, captured=captured, close_time=now
        )
        self._holds[reservation_id] = confirmed
        return confirmed

    async def roll_back(self, reservation_id: str, now: datetime) -> Reservation | None:
        hold = self._live(reservation_id, now)
        if hold is None:
            return None
        rolled_back = replace(hold, state=ReservationState.ROLLED_BACK, close_time=now)
        self._holds[reservation_id] = rolled_back
        return rolled_back

    async def expire_of_wallet(self, wallet_address: str, now: datetime) -> list[Reservation]:
        ids = [i for i, hold in self._holds.items() if hold.wallet_address == wallet_address]
        return await self.expire_these(ids, now)

    async def expire_these(self, reservation_ids: list[str], now: datetime) -> list[Reservation]:
        expired = []
        for reservation_id in reservation_ids:
            hold = self._holds.get(reservation_id)
            if hold is not None and hold.state is HELD and hold.expire_time <= now:
                # Closed when it expired, as the real statement records it.
                self._holds[reservation_id] = replace(
                    hold, state=ReservationState.EXPIRED, close_time=hold.expire_time
                )
                expired.append(self._holds[reservation_id])
        return expired

    async def due_for_expiry(self, now: datetime, limit: int) -> list[str]:
        due = [h for h in self._holds.values() if h.state is HELD and h.expire_time <= now]
        due.sort(key=lambda hold: hold.expire_time)
        return [hold.reservation_id for hold in due[:limit]]


class FakeLedger(LedgerRepository):
    def __init__(self, state: CreditsState) -> None:
        self._entries = state.ledger

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
        entry = LedgerEntry(
            entry_id=entry_id,
            # Grows with every entry, from 1, as the table's identity column does.
            sequence=len(self._entries) + 1,
            wallet_address=account.wallet_address,
            kind=kind,
            delta=delta,
            balance_after=account.available + account.reserved,
            reservation_id=reservation_id,
            description=description,
            create_time=now,
        )
        self._entries.append(entry)
        return entry

    async def find(self, *, for_update: bool = False, **equal_to: Any) -> LedgerEntry | None:
        (entry_id,) = found_by(equal_to, "entry_id")
        return next((entry for entry in self._entries if entry.entry_id == entry_id), None)

    async def of_wallet(self, wallet_address: str, page: PageRequest) -> Page[LedgerEntry]:
        return keyset_page(
            (entry for entry in self._entries if entry.wallet_address == wallet_address),
            lambda entry: (entry.sequence,),
            page.size,
            page.after,
        )


class FakeCreditsIdempotency(KeysInMemory, CreditsIdempotency):
    pass


class FakeCreditsOutbox(OutboxInMemory, CreditsOutbox):
    pass


def credits_repositories(state: CreditsState) -> CreditsRepositories:
    return CreditsRepositories(
        accounts=FakeAccounts(state),
        reservations=FakeReservations(state),
        ledger=FakeLedger(state),
        idempotency=FakeCreditsIdempotency(state.keys),
        outbox=FakeCreditsOutbox(state.outbox),
    )


def credits_unit_of_work() -> FakeUnitOfWork[CreditsState, CreditsRepositories]:
    return FakeUnitOfWork("credits", CreditsState(), credits_repositories)
