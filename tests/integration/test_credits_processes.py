"""Real credits processes: two replicas sharing PostgreSQL, and one killed mid-storm.

Each process is `python -m services.credits`, configured only by R3MES_* variables, as a
deployment runs it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import pytest
from r3mes.credits.v1 import credits_pb2, credits_pb2_grpc

from services.core.db import Database
from services.core.migrate import upgrade
from services.core.ports import free_port
from services.core.settings import Settings
from services.core.testing import new_wallet_address, until_serving
from tests.conftest import INTERNAL_TOKEN
from tests.integration.credits_support import (
    CREDIT,
    INTERNAL,
    check_invariants,
    kinds,
    new_key,
    outcome_of,
    stored_rows,
)

START_SECONDS = 30.0


def environment(settings: Settings, port: int) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("R3MES_")}
    return {
        **inherited,
        "R3MES_DATA_DIR": str(settings.data_dir),
        "R3MES_SCHEMA_SUFFIX": settings.schema_suffix,
        **({"R3MES_DATABASE_URL": settings.database_url} if settings.database_url else {}),
        "R3MES_CREDITS_PORT": str(port),
        "R3MES_LISTEN_HOST": "127.0.0.1",
        "R3MES_INTERNAL_TOKEN": INTERNAL_TOKEN,
        "R3MES_MIGRATE_ON_START": "true",
        "R3MES_LOG_LEVEL": "WARNING",
    }


async def start(settings: Settings, port: int, log: Path) -> asyncio.subprocess.Process:
    """A credits process on `port`, once its health says SERVING."""
    with log.open("ab") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.credits",
            env=environment(settings, port),
            stdout=output,
            stderr=output,
        )
    target = f"127.0.0.1:{port}"
    if await until_serving(target, START_SECONDS, lambda: process.returncode is None):
        return process
    process.kill()
    raise AssertionError(f"credits did not start: {await asyncio.to_thread(log.read_text)}")


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()


@asynccontextmanager
async def stub_on(port: int) -> AsyncIterator[credits_pb2_grpc.CreditsServiceAsyncStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield credits_pb2_grpc.CreditsServiceStub(channel)


async def migrated(settings: Settings) -> None:
    """Once, before any replica starts."""
    database = Database.from_settings(settings, "credits")
    try:
        await upgrade(database, "credits")
    finally:
        await database.dispose()


def reserve(
    stub: credits_pb2_grpc.CreditsServiceAsyncStub,
    wallet: str,
    amount: int,
    key: str,
    ttl_seconds: int = 600,
) -> Any:
    return stub.ReserveCredits(
        credits_pb2.ReserveCreditsRequest(
            wallet_address=wallet,
            amount_micro_credits=amount,
            ttl_seconds=ttl_seconds,
            idempotency_key=key,
        ),
        metadata=INTERNAL,
        timeout=10,
    )


def grant(stub: credits_pb2_grpc.CreditsServiceAsyncStub, wallet: str, amount: int) -> Any:
    return stub.GrantCredits(
        credits_pb2.GrantCreditsRequest(
            wallet_address=wallet, amount_micro_credits=amount, idempotency_key=new_key()
        ),
        metadata=INTERNAL,
    )


@pytest.mark.postgres
@pytest.mark.usefixtures("postgres_available")
async def test_two_processes_sharing_the_database_hold_exactly_what_the_wallet_has(
    tmp_path: Path,
) -> None:
    from tests.conftest import RUN_SUFFIX, settings_for

    settings = settings_for("postgres", tmp_path, suffix=f"{RUN_SUFFIX}_replicas")
    await migrated(settings)
    ports = [free_port(), free_port()]
    processes = await asyncio.gather(*(start(settings, port, tmp_path / "log") for port in ports))
    try:
        async with stub_on(ports[0]) as first, stub_on(ports[1]) as second:
            stubs = [first, second]
            wallet = new_wallet_address()
            await grant(first, wallet, 100 * CREDIT)

            holds = await asyncio.gather(
                *(
                    outcome_of(partial(reserve, stubs[i % 2], wallet, CREDIT, new_key()))
                    for i in range(500)
                )
            )
            assert kinds(holds) == {"OK": 100, "INSUFFICIENT_CREDITS": 400}

            # Each hold confirmed on one replica and rolled back on the other, at once.
            ids = [hold.reservation.reservation_id for hold in holds if not isinstance(hold, str)]
            races = await asyncio.gather(
                *(
                    asyncio.gather(
                        outcome_of(partial(confirm, stubs[i % 2], hold)),
                        outcome_of(partial(roll_back, stubs[(i + 1) % 2], hold)),
                    )
                    for i, hold in enumerate(ids)
                )
            )
            for confirmed, rolled_back in races:
                assert kinds([confirmed, rolled_back]) in (
                    {"OK": 1, "RESERVATION_ALREADY_CONFIRMED": 1},
                    {"OK": 1, "RESERVATION_ALREADY_ROLLED_BACK": 1},
                )
            captured = sum(1 for confirmed, _ in races if not isinstance(confirmed, str))
            rows = await check_invariants(settings, second, datetime.now(UTC))
    finally:
        await asyncio.gather(*(stop(process) for process in processes))

    (account,) = rows["accounts"]
    assert (account.available, account.reserved) == ((100 - captured) * CREDIT, 0)


def confirm(stub: credits_pb2_grpc.CreditsServiceAsyncStub, reservation_id: str) -> Any:
    return stub.ConfirmReservation(
        credits_pb2.ConfirmReservationRequest(
            reservation_id=reservation_id, idempotency_key=f"confirm-{reservation_id}"
        ),
        metadata=INTERNAL,
        timeout=10,
    )


def roll_back(stub: credits_pb2_grpc.CreditsServiceAsyncStub, reservation_id: str) -> Any:
    return stub.RollbackReservation(
        credits_pb2.RollbackReservationRequest(
            reservation_id=reservation_id, idempotency_key=f"rollback-{reservation_id}"
        ),
        metadata=INTERNAL,
        timeout=10,
    )


PAIRS = 60
ABANDONED = 20
SWEPT_WITHIN_SECONDS = 20.0


async def some_abandoned_hold_is_stored(settings: Settings) -> None:
    """Wait until at least one one-second hold is committed (so the crash leaves one behind)."""
    for _ in range(100):
        rows = (await stored_rows(settings))["reservations"]
        if any((r.expire_time - r.create_time).total_seconds() == 1 for r in rows):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no abandoned hold was stored")


async def holds_left_open(settings: Settings) -> int:
    """Once the restarted process's sweeper has run over holds past their time: 0."""
    deadline = asyncio.get_running_loop().time() + SWEPT_WITHIN_SECONDS
    while True:
        held = [r for r in (await stored_rows(settings))["reservations"] if r.state == "HELD"]
        if not held or asyncio.get_running_loop().time() > deadline:
            return len(held)
        await asyncio.sleep(0.2)


async def test_a_process_killed_mid_storm_and_restarted_leaves_every_hold_resolved_once(
    settings: Settings, tmp_path: Path
) -> None:
    await migrated(settings)
    port = free_port()
    log = tmp_path / "log"
    process = await start(settings, port, log)
    done = 0
    ten_done = asyncio.Event()

    async def pair(stub: credits_pb2_grpc.CreditsServiceAsyncStub, wallet: str) -> Any:
        nonlocal done
        # Retried with the same keys through the crash, as a caller following the protos would.
        hold = await outcome_of(partial(reserve, stub, wallet, CREDIT, new_key("crash")))
        if isinstance(hold, str):
            return hold
        result = await outcome_of(partial(confirm, stub, hold.reservation.reservation_id))
        done += 1
        if done == 10:
            ten_done.set()
        return result

    try:
        async with stub_on(port) as stub:
            wallets = [new_wallet_address() for _ in range(3)]
            for wallet in wallets:
                await grant(stub, wallet, PAIRS * CREDIT)
            # Holds whose callers give up with the crash: nobody confirms or rolls them back.
            # Sent before the storm, so that they are stored while the storm is still running.
            abandoned = asyncio.gather(
                *(
                    reserve(stub, wallets[i % 3], CREDIT, new_key("gone"), 1)
                    for i in range(ABANDONED)
                ),
                return_exceptions=True,
            )
            await some_abandoned_hold_is_stored(settings)
            storm = asyncio.gather(*(pair(stub, wallets[i % 3]) for i in range(PAIRS)))
            await ten_done.wait()
            process.send_signal(signal.SIGKILL)
            await process.wait()
            finished_before_the_crash = done
            await abandoned
            process = await start(settings, port, log)
            outcomes = await storm
            left_open = await holds_left_open(settings)
            rows = await check_invariants(settings, stub, datetime.now(UTC))
    finally:
        await stop(process)

    assert finished_before_the_crash < PAIRS
    assert kinds(outcomes) == {"OK": PAIRS}
    assert left_open == 0
    states = Counter(row.state for row in rows["reservations"])
    # Every pair's hold confirmed once; each abandoned hold that was stored expired.
    assert states["CONFIRMED"] == PAIRS
    assert set(states) <= {"CONFIRMED", "EXPIRED"}
    assert 1 <= states["EXPIRED"] <= ABANDONED
    assert sum(row.available + row.reserved for row in rows["accounts"]) == 2 * PAIRS * CREDIT
    assert sum(row.reserved for row in rows["accounts"]) == 0
