"""The operations of the credits service: plain values in, domain objects out, one unit of work
each, so the money moved, the ledger entry and the idempotency record commit together or not at
all. A unit of work that met a concurrent one is retried whole by the kernel."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from services.core.clock import Clock
from services.core.errors import R3mesError, TransactionConflict
from services.core.pagination import Page, PageRequest
from services.core.uow import UnitOfWork
from services.credits.domain import (
    Balance,
    BalanceLimitExceeded,
    Capture,
    HeldReservations,
    Hold,
    InsufficientCredits,
    LedgerEntry,
    LedgerEntryKind,
    Movement,
    NetworkTotal,
    Reservation,
    ReservationNotFound,
    ReservationState,
    capture_amount,
    expire_time_of,
    new_identifier,
)
from services.credits.replays import (
    capture_replay,
    encode_capture,
    encode_hold,
    encode_movement,
    hold_replay,
    movement_replay,
)
from services.credits.repository import CreditsRepositories

SWEEP_BATCH = 500
SWEEP_MAX_BATCHES = 20  # per run: one run stays short; the next run takes the rest


class CreditsUseCases:
    def __init__(self, uow: UnitOfWork[CreditsRepositories], clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def balance(self, wallet_address: str) -> Balance:
        now = self._clock()
        return await self._uow.run(
            lambda r: r.accounts.balance(wallet_address, now), read_only=True
        )

    async def network_total(self) -> NetworkTotal:
        now = self._clock()
        return await self._uow.run(lambda r: r.accounts.network_total(now), read_only=True)

    async def ledger(self, wallet_address: str, page: PageRequest) -> Page[LedgerEntry]:
        return await self._uow.run(
            lambda r: r.ledger.of_wallet(wallet_address, page), read_only=True
        )

    async def grant(self, wallet_address: str, amount: int, description: str, key: str) -> Movement:
        now = self._clock()
        parameters = {"wallet": wallet_address, "amount": amount, "description": description}

        async def in_unit(r: CreditsRepositories) -> Movement:
            async def work() -> Movement:
                account = await r.accounts.add(wallet_address, amount, now)
                if account is None:
                    raise BalanceLimitExceeded(wallet_address, amount)
                entry = await r.ledger.append(
                    new_identifier(), account, LedgerEntryKind.GRANT, amount, description, now
                )
                return Movement(entry, await r.accounts.balance(wallet_address, now))

            return await r.idempotency.remembered(
                "GrantCredits", key, parameters, now, work, encode_movement, movement_replay(r)
            )

        return await self._uow.run(in_unit)

    async def deduct(
        self, wallet_address: str, amount: int, description: str, key: str
    ) -> Movement:
        now = self._clock()
        parameters = {"wallet": wallet_address, "amount": amount, "description": description}

        async def in_unit(r: CreditsRepositories) -> Movement:
            async def work() -> Movement:
                account = await r.accounts.take(wallet_address, amount, now)
                if account is None and await _release_expired(r, wallet_address, now):
                    account = await r.accounts.take(wallet_address, amount, now)
                if account is None:
                    available = (await r.accounts.balance(wallet_address, now)).available
                    raise InsufficientCredits(wallet_address, amount, available)
                entry = await r.ledger.append(
                    new_identifier(), account, LedgerEntryKind.DEDUCTION, -amount, description, now
                )
                return Movement(entry, await r.accounts.balance(wallet_address, now))

            return await r.idempotency.remembered(
                "DeductCredits", key, parameters, now, work, encode_movement, movement_replay(r)
            )

        return await self._uow.run(in_unit)

    async def reserve(
        self, wallet_address: str, amount: int, ttl_seconds: int, description: str, key: str
    ) -> Hold:
        now = self._clock()
        parameters = {
            "wallet": wallet_address,
            "amount": amount,
            "ttl_seconds": ttl_seconds,
            "description": description,
        }

        async def in_unit(r: CreditsRepositories) -> Hold:
            async def work() -> Hold:
                # The hold is written first, so the wallet's row stays locked (from the
                # conditional write to the commit) as briefly as possible; a refusal rolls it
                # back with the rest.
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
                held = await r.accounts.hold(wallet_address, amount, now)
                if held is None and await _release_expired(r, wallet_address, now):
                    held = await r.accounts.hold(wallet_address, amount, now)
                if held is None:
                    available = (await r.accounts.balance(wallet_address, now)).available
                    raise InsufficientCredits(wallet_address, amount, available)
                return Hold(reservation, await r.accounts.balance(wallet_address, now))

            return await r.idempotency.remembered(
                "ReserveCredits", key, parameters, now, work, encode_hold, hold_replay(r, now)
            )

        return await self._uow.run(in_unit)

    async def confirm(self, reservation_id: str, amount: int | None, key: str) -> Capture:
        now = self._clock()
        parameters = {"reservation_id": reservation_id, "amount": amount}

        async def in_unit(r: CreditsRepositories) -> Capture:
            async def work() -> Capture:
                reservation = await r.reservations.confirm(reservation_id, amount, now)
                if reservation is None:
                    raise await _refusal_to_confirm(r, reservation_id, amount, now)
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
                return Capture(reservation, entry, await r.accounts.balance(wallet, now))

            return await r.idempotency.remembered(
                "ConfirmReservation",
                key,
                parameters,
                now,
                work,
                encode_capture,
                capture_replay(r, now),
            )

        return await self._uow.run(in_unit)

    async def roll_back(self, reservation_id: str, key: str) -> Hold:
        now = self._clock()
        parameters = {"reservation_id": reservation_id}

        async def in_unit(r: CreditsRepositories) -> Hold:
            async def work() -> Hold:
                reservation = await r.reservations.roll_back(reservation_id, now)
                if reservation is None:
                    reservation = await _already_released(r, reservation_id, now)
                else:
                    await r.accounts.release(reservation.wallet_address, reservation.amount, 0, now)
                return Hold(reservation, await r.accounts.balance(reservation.wallet_address, now))

            return await r.idempotency.remembered(
                "RollbackReservation",
                key,
                parameters,
                now,
                work,
                encode_hold,
                hold_replay(r, now),
            )

        return await self._uow.run(in_unit)

    async def held(self) -> HeldReservations:
        now = self._clock()
        return await self._uow.run(lambda r: r.reservations.held(now), read_only=True)

    async def expire_due(self) -> int:
        """The sweeper: resolve holds past their time as EXPIRED and release their credits, in
        batches; returns how many. Safe beside sweepers of other replicas."""

        async def batch(r: CreditsRepositories) -> int:
            now = self._clock()
            due = await r.reservations.due_for_expiry(now, SWEEP_BATCH)
            if not due:
                return 0
            expired = await r.reservations.expire_these(due, now)
            await _release_all(r, expired, now)
            return len(expired)

        swept = 0
        for _ in range(SWEEP_MAX_BATCHES):
            count = await self._uow.run(batch)
            swept += count
            if count < SWEEP_BATCH:
                break
        return swept


async def _release_expired(r: CreditsRepositories, wallet_address: str, now: datetime) -> bool:
    """Resolve the wallet's expired holds now, as the sweeper would; True if any were."""
    expired = await r.reservations.expire_of_wallet(wallet_address, now)
    await _release_all(r, expired, now)
    return bool(expired)


async def _release_all(r: CreditsRepositories, expired: list[Reservation], now: datetime) -> None:
    held_by: dict[str, int] = defaultdict(int)
    for reservation in expired:
        held_by[reservation.wallet_address] += reservation.amount
    # Accounts in one order, so two units releasing the same wallets never wait on each other
    # in a cycle.
    for wallet in sorted(held_by):
        await r.accounts.release(wallet, held_by[wallet], 0, now)


async def _refusal_to_confirm(
    r: CreditsRepositories, reservation_id: str, amount: int | None, now: datetime
) -> R3mesError:
    stored = await r.reservations.get(reservation_id)
    if stored is None:
        return ReservationNotFound(reservation_id)
    refusal = stored.refusal_to_confirm(now, amount)
    # None: it changed between the write and this read; the kernel runs the unit again.
    return refusal or TransactionConflict("the reservation changed meanwhile; retry")


async def _already_released(
    r: CreditsRepositories, reservation_id: str, now: datetime
) -> Reservation:
    """A rollback of a hold that is no longer live: rolled back or expired ones come back as
    they are; one that expired unswept is resolved as EXPIRED now, releasing its credits."""
    stored = await r.reservations.get(reservation_id)
    if stored is None:
        raise ReservationNotFound(reservation_id)
    refusal = stored.refusal_to_roll_back()
    if refusal is not None:
        raise refusal
    if stored.state is not ReservationState.HELD:
        return stored
    expired = await r.reservations.expire_these([reservation_id], now)
    if not expired:
        raise TransactionConflict("the reservation changed meanwhile; retry")
    await _release_all(r, expired, now)
    return expired[0]
