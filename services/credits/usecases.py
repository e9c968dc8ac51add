"""The operations of the credits service: plain values in, domain objects out, one unit of work
each, so the money moved, the ledger entry and the idempotency record commit together or not at
all. A unit of work that met a concurrent one is retried whole by the kernel.

A money move is one statement on PostgreSQL (services/credits/moves.py), so its unit of work runs
without BEGIN and COMMIT there; reads are one statement each too."""

from __future__ import annotations

from typing import TypeVar

from services.core.clock import Clock
from services.core.pagination import Page, PageRequest
from services.core.uow import UnitOfWork
from services.credits import metrics
from services.credits.domain import (
    Balance,
    Capture,
    HeldReservations,
    Hold,
    LedgerEntry,
    Movement,
    NetworkTotal,
    ReservationState,
    Transitions,
)
from services.credits.moves import Moved, moves_on
from services.credits.repository import CreditsRepositories

ResultT = TypeVar("ResultT")

SWEEP_BATCH = 500
SWEEP_MAX_BATCHES = 20  # per run: one run stays short; the next run takes the rest


class CreditsUseCases:
    def __init__(self, uow: UnitOfWork[CreditsRepositories], clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def balance(self, wallet_address: str) -> Balance:
        now = self._clock()
        return await self._uow.run(
            lambda r: r.accounts.balance(wallet_address, now), read_only=True, one_statement=True
        )

    async def network_total(self) -> NetworkTotal:
        now = self._clock()
        # A scan of every account: not a lone read for the event loop's thread on SQLite.
        return await self._uow.run(lambda r: r.accounts.network_total(now), read_only=True)

    async def ledger(self, wallet_address: str, page: PageRequest) -> Page[LedgerEntry]:
        return await self._uow.run(
            lambda r: r.ledger.of_wallet(wallet_address, page), read_only=True, one_statement=True
        )

    async def grant(self, wallet_address: str, amount: int, description: str, key: str) -> Movement:
        now = self._clock()
        return await self._uow.run(
            lambda r: moves_on(r).grant(wallet_address, amount, description, key, now),
            one_statement=True,
        )

    async def deduct(
        self, wallet_address: str, amount: int, description: str, key: str
    ) -> Movement:
        now = self._clock()
        return _counted(
            await self._uow.run(
                lambda r: moves_on(r).deduct(wallet_address, amount, description, key, now),
                one_statement=True,
            )
        )

    async def reserve(
        self, wallet_address: str, amount: int, ttl_seconds: int, description: str, key: str
    ) -> Hold:
        now = self._clock()
        return _counted(
            await self._uow.run(
                lambda r: moves_on(r).reserve(
                    wallet_address, amount, ttl_seconds, description, key, now
                ),
                one_statement=True,
            )
        )

    async def confirm(self, reservation_id: str, amount: int | None, key: str) -> Capture:
        now = self._clock()
        return _counted(
            await self._uow.run(
                lambda r: moves_on(r).confirm(reservation_id, amount, key, now),
                one_statement=True,
            )
        )

    async def roll_back(self, reservation_id: str, key: str) -> Hold:
        now = self._clock()
        return _counted(
            await self._uow.run(
                lambda r: moves_on(r).roll_back(reservation_id, key, now), one_statement=True
            )
        )

    async def held(self) -> HeldReservations:
        now = self._clock()
        # One statement over the open holds' index: short, so a lone read (no BEGIN/COMMIT).
        return await self._uow.run(
            lambda r: r.reservations.held(now), read_only=True, one_statement=True
        )

    async def count_by_state(self) -> dict[ReservationState, int]:
        # One statement: a lone read, as held() is.
        return await self._uow.run(
            lambda r: r.reservations.count_by_state(), read_only=True, one_statement=True
        )

    async def expire_due(self) -> int:
        """The sweeper: resolve holds past their time as EXPIRED and release their credits, in
        batches; returns how many. Safe beside sweepers of other replicas."""
        swept = 0
        for _ in range(SWEEP_MAX_BATCHES):
            count = await self._uow.run(
                lambda r: moves_on(r).expire_due(self._clock(), SWEEP_BATCH), one_statement=True
            )
            metrics.count(Transitions(expired=count))
            swept += count
            if count < SWEEP_BATCH:
                break
        return swept


def _counted(moved: Moved[ResultT]) -> ResultT:
    """The move's answer, its changes counted once it has committed (a unit of work run again
    after a conflict counts only the run that stood)."""
    metrics.count(moved.transitions)
    return moved.result
