"""What the credits tests share: a running credits server with a fake clock, calls with the
internal token, and the ledger's invariants read straight from storage after every scenario."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from itertools import count
from typing import Any, cast

import grpc
from r3mes.credits.v1 import credits_pb2, credits_pb2_grpc
from sqlalchemy import select

from services.core.background import PeriodicJob
from services.core.db import Database
from services.core.lifecycle import ServiceServer
from services.core.settings import Settings
from services.core.testing import FakeClock, eventually, serving
from services.credits import tables
from services.credits.server import RESERVATION_SWEEPER, create_server
from tests.conftest import INTERNAL_TOKEN
from tests.integration.rpc import failure_of

INTERNAL = (("x-r3mes-internal-token", INTERNAL_TOKEN),)
CREDIT = 1_000_000
_keys = count()


def new_key(prefix: str = "k") -> str:
    return f"{prefix}-{next(_keys)}"


@dataclass
class Credits:
    """A running credits server, a stub on it with the internal token, its clock."""

    server: ServiceServer
    stub: credits_pb2_grpc.CreditsServiceAsyncStub
    channel: grpc.aio.Channel
    clock: FakeClock
    settings: Settings
    port: int

    async def grant(self, wallet: str, amount: int, key: str | None = None) -> Any:
        return await self.stub.GrantCredits(
            credits_pb2.GrantCreditsRequest(
                wallet_address=wallet, amount_micro_credits=amount, idempotency_key=key or new_key()
            ),
            metadata=INTERNAL,
        )

    async def reserve(
        self, wallet: str, amount: int, ttl_seconds: int = 0, key: str | None = None
    ) -> Any:
        return await self.stub.ReserveCredits(
            credits_pb2.ReserveCreditsRequest(
                wallet_address=wallet,
                amount_micro_credits=amount,
                ttl_seconds=ttl_seconds,
                idempotency_key=key or new_key(),
            ),
            metadata=INTERNAL,
        )

    async def confirm(
        self, reservation_id: str, amount: int | None = None, key: str | None = None
    ) -> Any:
        request = credits_pb2.ConfirmReservationRequest(
            reservation_id=reservation_id, idempotency_key=key or new_key()
        )
        if amount is not None:
            request.amount_micro_credits = amount
        return await self.stub.ConfirmReservation(request, metadata=INTERNAL)

    async def roll_back(self, reservation_id: str, key: str | None = None) -> Any:
        return await self.stub.RollbackReservation(
            credits_pb2.RollbackReservationRequest(
                reservation_id=reservation_id, idempotency_key=key or new_key()
            ),
            metadata=INTERNAL,
        )

    async def deduct(self, wallet: str, amount: int, key: str | None = None) -> Any:
        return await self.stub.DeductCredits(
            credits_pb2.DeductCreditsRequest(
                wallet_address=wallet, amount_micro_credits=amount, idempotency_key=key or new_key()
            ),
            metadata=INTERNAL,
        )

    async def balance(self, wallet: str) -> credits_pb2.Balance:
        response = await self.stub.GetBalance(credits_pb2.GetBalanceRequest(wallet_address=wallet))
        return response.balance

    async def sweep(self) -> bool:
        """One run of the server's own reservation sweeper; True when it succeeded."""
        return await self._sweeper().run_once()

    async def sweep_as_replicas(self, replicas: int) -> list[int]:
        """The sweep of `replicas` replicas at once (each a run of the job's work, as separate
        processes would run it); how many holds each one expired."""
        work = self._sweeper().run  # expire_due: the number of holds it expired
        return cast("list[int]", await asyncio.gather(*(work() for _ in range(replicas))))

    def _sweeper(self) -> PeriodicJob:
        (job,) = [job for job in self.server.jobs if job.name == "reservation-sweeper"]
        return job


# A deadline that passed leaves the call's outcome unknown: the same key again tells.
RETRYABLE = (
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
)


async def outcome_of(call: Callable[[], Awaitable[Any]], budget_seconds: float = 60.0) -> Any:
    """The call's response or its failure reason, retrying ABORTED, UNAVAILABLE (a storm can
    exhaust the connection pool for a moment, a process may be restarting) and DEADLINE_EXCEEDED
    with the same request and idempotency key, as the protos tell callers to, for at most
    `budget_seconds`."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + budget_seconds
    delay = 0.01
    while True:
        try:
            return await call()
        except grpc.aio.AioRpcError as error:
            if error.code() not in RETRYABLE:
                return failure_of(error).reason
            if loop.time() > give_up:
                return error.code().name
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)


def kinds(outcomes: list[Any]) -> Counter[str]:
    """The outcomes of `outcome_of` counted by kind: "OK", or the failure reason."""
    return Counter(o if isinstance(o, str) else "OK" for o in outcomes)


@asynccontextmanager
async def running_credits(
    settings: Settings, clock: FakeClock | None = None, **options: Any
) -> AsyncIterator[Credits]:
    """A credits server on a free port of 127.0.0.1 (`Credits.port`, for other services)."""
    clock = clock or FakeClock()
    # The background sweeper would run on its own schedule; tests run it when they mean to.
    options.setdefault("sweep_interval_seconds", 3600.0)
    create = partial(create_server, clock=clock, **options)
    async with (
        serving(create, settings, "credits") as (server, target),
        grpc.aio.insecure_channel(target) as channel,
    ):
        stub = credits_pb2_grpc.CreditsServiceStub(channel)
        port = int(target.rsplit(":", 1)[1])
        # Its first run at start, done before the test moves the clock: else a hold the test
        # expires could be swept by it on a busy machine.
        (sweeper,) = [job for job in server.jobs if job.name == RESERVATION_SWEEPER]
        await eventually(lambda: sweeper.runs >= 1)
        yield Credits(server, stub, channel, clock, settings, port)


async def seed_grant(credits: Credits, wallet: str, amount: int) -> None:
    """A wallet that already holds `amount`, written straight to storage as a grant would be
    (account and ledger entry together): for states too costly to reach call by call."""
    await seed_grants(credits.settings, credits.clock(), {wallet: amount})


async def seed_grants(settings: Settings, now: datetime, amounts: Mapping[str, int]) -> None:
    """Wallets that already hold these amounts (each at least 1), granted at `now`, seeded in one
    transaction into the credits storage of `settings` (a test's server, or a whole stack's)."""
    database = Database.from_settings(settings, "credits")
    try:
        async with database.transaction() as connection:
            await connection.execute(
                tables.accounts.insert(),
                [
                    {
                        "wallet_address": wallet,
                        "available": amount,
                        "reserved": 0,
                        "update_time": now,
                    }
                    for wallet, amount in amounts.items()
                ],
            )
            await connection.execute(
                tables.ledger_entries.insert(),
                [
                    {
                        "entry_id": new_key("seed"),
                        "wallet_address": wallet,
                        "kind": "GRANT",
                        "delta": amount,
                        "balance_after": amount,
                        "reservation_id": None,
                        "description": "seeded",
                        "create_time": now,
                    }
                    for wallet, amount in amounts.items()
                ],
            )
    finally:
        await database.dispose()


@asynccontextmanager
async def hold_wallet_lock(settings: Settings, wallet: str) -> AsyncIterator[None]:
    """Keep the wallet's account locked by another transaction while the block runs (the row
    lock on PostgreSQL, the database's write lock on SQLite): calls on it wait meanwhile."""
    database = Database.from_settings(settings, "credits")
    accounts = tables.accounts
    try:
        async with database.transaction() as connection:
            await connection.execute(
                accounts.update()
                .where(accounts.c.wallet_address == wallet)
                .values(update_time=accounts.c.update_time)
            )
            yield
    finally:
        await database.dispose()


async def stored_rows(settings: Settings) -> dict[str, list[Any]]:
    """Every row of the credits tables, read directly from storage."""
    database = Database.from_settings(settings, "credits")
    try:
        async with database.transaction(read_only=True) as connection:
            ledger = tables.ledger_entries
            statements = {
                "accounts": select(tables.accounts),
                "reservations": select(tables.reservations),
                "ledger": select(ledger).order_by(ledger.c.sequence),
                "idempotency_keys": select(tables.idempotency_keys),
            }
            return {
                name: list(await connection.execute(statement))
                for name, statement in statements.items()
            }
    finally:
        await database.dispose()


async def assert_invariants(credits: Credits) -> dict[str, Any]:
    """The ledger's invariants on this server's storage, at its clock's time."""
    return await check_invariants(credits.settings, credits.stub, credits.clock())


async def check_invariants(
    settings: Settings, stub: credits_pb2_grpc.CreditsServiceAsyncStub, now: datetime
) -> dict[str, Any]:
    """The ledger's rules, checked against storage and against what GetBalance says:

    - each wallet's total = Σ grants - Σ captures - Σ deductions of its ledger, and each entry's
      balance_after is the running sum;
    - stored reserved = Σ amounts of its HELD holds; what GetBalance reports as reserved = Σ of
      the live ones (not past their expire time); 0 ≤ reserved ≤ total;
    - every reservation is in exactly one known state, consistent with its capture, close time
      and ledger entry.
    Returns the rows, for the test's own assertions."""
    rows = await stored_rows(settings)
    ledger_total: dict[str, int] = defaultdict(int)
    captures: dict[str, list[int]] = defaultdict(list)
    for entry in rows["ledger"]:
        assert entry.kind in ("GRANT", "DEDUCTION", "CAPTURE")
        assert (entry.delta > 0) == (entry.kind == "GRANT"), entry
        ledger_total[entry.wallet_address] += entry.delta
        assert entry.balance_after == ledger_total[entry.wallet_address], entry
        assert (entry.reservation_id is not None) == (entry.kind == "CAPTURE"), entry
        if entry.kind == "CAPTURE":
            captures[entry.reservation_id].append(-entry.delta)
    held: dict[str, int] = defaultdict(int)
    live: dict[str, int] = defaultdict(int)
    for reservation in rows["reservations"]:
        state = reservation.state
        assert state in ("HELD", "CONFIRMED", "ROLLED_BACK", "EXPIRED"), reservation
        assert (reservation.close_time is None) == (state == "HELD"), reservation
        if state == "CONFIRMED":
            assert 0 < reservation.captured <= reservation.amount, reservation
            assert captures[reservation.reservation_id] == [reservation.captured], reservation
        else:
            assert reservation.captured == 0, reservation
            assert reservation.reservation_id not in captures, reservation
        if state == "HELD":
            held[reservation.wallet_address] += reservation.amount
            if reservation.expire_time > now:
                live[reservation.wallet_address] += reservation.amount
    accounts = {account.wallet_address: account for account in rows["accounts"]}
    assert set(ledger_total) <= set(accounts)
    for wallet, account in accounts.items():
        total = account.available + account.reserved
        assert total == ledger_total[wallet], (wallet, total, ledger_total[wallet])
        assert account.reserved == held[wallet], (wallet, account.reserved, held[wallet])
        assert 0 <= account.reserved <= total
        seen = (await stub.GetBalance(credits_pb2.GetBalanceRequest(wallet_address=wallet))).balance
        assert seen.reserved_micro_credits == live[wallet], wallet
        assert seen.total_micro_credits == total
        assert seen.available_micro_credits == total - live[wallet]
    return rows
