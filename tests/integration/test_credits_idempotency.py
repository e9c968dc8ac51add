"""A repeat of a mutating credits call returns the first result and changes nothing."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
import pytest
from r3mes.credits.v1 import credits_pb2, credits_pb2_grpc

from services.core.testing import new_wallet_address
from tests.faults import CuttableProxy
from tests.integration.credits_support import (
    CREDIT,
    INTERNAL,
    Credits,
    assert_invariants,
    hold_wallet_lock,
    stored_rows,
)
from tests.integration.rpc import failure_of


async def test_a_repeated_grant_returns_the_first_entry_and_grants_once(credits: Credits) -> None:
    wallet = new_wallet_address()

    first = await credits.grant(wallet, 5 * CREDIT, key="grant-a")
    credits.clock.advance(seconds=5)
    again = await credits.grant(wallet, 5 * CREDIT, key="grant-a")

    assert again == first
    assert (await credits.balance(wallet)).total_micro_credits == 5 * CREDIT


async def test_a_key_reused_with_other_parameters_is_refused_and_changes_nothing(
    credits: Credits,
) -> None:
    wallet = new_wallet_address()
    await credits.grant(wallet, 5 * CREDIT, key="grant-b")

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await credits.grant(wallet, 6 * CREDIT, key="grant-b")

    failure = failure_of(raised.value)
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "IDEMPOTENCY_KEY_REUSED",
    )
    assert (await credits.balance(wallet)).total_micro_credits == 5 * CREDIT


async def test_keys_are_scoped_to_their_rpc(credits: Credits) -> None:
    wallet = new_wallet_address()
    await credits.grant(wallet, 5 * CREDIT, key="shared")

    deducted = await credits.deduct(wallet, 2 * CREDIT, key="shared")

    assert deducted.balance.total_micro_credits == 3 * CREDIT


async def test_a_repeated_reserve_returns_the_same_reservation_in_its_current_state(
    credits: Credits,
) -> None:
    wallet = new_wallet_address()
    await credits.grant(wallet, 5 * CREDIT)
    first = await credits.reserve(wallet, 2 * CREDIT, key="reserve-a")
    await credits.confirm(first.reservation.reservation_id, amount=CREDIT)

    again = await credits.reserve(wallet, 2 * CREDIT, key="reserve-a")

    assert again.reservation.reservation_id == first.reservation.reservation_id
    assert again.reservation.state == credits_pb2.RESERVATION_STATE_CONFIRMED
    assert again.reservation.captured_micro_credits == CREDIT
    assert again.balance == first.balance  # the balance the first call returned
    assert (await credits.balance(wallet)).total_micro_credits == 4 * CREDIT


async def test_repeated_confirms_rollbacks_and_deductions_take_effect_once(
    credits: Credits,
) -> None:
    wallet = new_wallet_address()
    await credits.grant(wallet, 10 * CREDIT)
    confirmed = (await credits.reserve(wallet, 3 * CREDIT)).reservation.reservation_id
    rolled_back = (await credits.reserve(wallet, 3 * CREDIT)).reservation.reservation_id

    confirms = [await credits.confirm(confirmed, key="confirm-a") for _ in range(3)]
    rollbacks = [await credits.roll_back(rolled_back, key="rollback-a") for _ in range(3)]
    deductions = [await credits.deduct(wallet, CREDIT, key="deduct-a") for _ in range(3)]

    assert confirms[1:] == confirms[:1] * 2
    assert rollbacks[1:] == rollbacks[:1] * 2
    assert deductions[1:] == deductions[:1] * 2
    balance = await credits.balance(wallet)
    assert (balance.available_micro_credits, balance.reserved_micro_credits) == (6 * CREDIT, 0)


async def test_a_first_call_that_failed_is_not_remembered(credits: Credits) -> None:
    wallet = new_wallet_address()

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await credits.reserve(wallet, CREDIT, key="reserve-b")
    assert failure_of(raised.value).reason == "INSUFFICIENT_CREDITS"
    await credits.grant(wallet, CREDIT)
    retried = await credits.reserve(wallet, CREDIT, key="reserve-b")

    assert retried.reservation.state == credits_pb2.RESERVATION_STATE_HELD


async def test_concurrent_repeats_of_one_call_take_effect_once(credits: Credits) -> None:
    wallet = new_wallet_address()
    await credits.grant(wallet, 10 * CREDIT)

    results = await asyncio.gather(
        *(credits.reserve(wallet, CREDIT, key="reserve-c") for _ in range(10)),
        return_exceptions=True,
    )

    ids = {r.reservation.reservation_id for r in results if not isinstance(r, BaseException)}
    aborted = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(ids) == 1
    assert all(error.code() is grpc.StatusCode.ABORTED for error in aborted)
    assert (await credits.balance(wallet)).reserved_micro_credits == CREDIT


async def test_a_retry_after_a_call_that_outlived_its_deadline_takes_effect_exactly_once(
    credits: Credits,
) -> None:
    wallet = new_wallet_address()
    await credits.grant(wallet, 10 * CREDIT)
    request = credits_pb2.ReserveCreditsRequest(
        wallet_address=wallet, amount_micro_credits=CREDIT, idempotency_key="reserve-lost"
    )

    # Storage is busy with the wallet past the client's deadline: the client gives up, and the
    # server's call, cancelled with it, leaves either nothing or its whole effect.
    async with hold_wallet_lock(credits.settings, wallet):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await credits.stub.ReserveCredits(request, metadata=INTERNAL, timeout=0.3)
    assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    retried = await credits.stub.ReserveCredits(request, metadata=INTERNAL, timeout=10)
    again = await credits.stub.ReserveCredits(request, metadata=INTERNAL, timeout=10)

    assert again.reservation == retried.reservation
    rows = await assert_invariants(credits)
    assert [r.reservation_id for r in rows["reservations"]] == [retried.reservation.reservation_id]
    assert (await credits.balance(wallet)).reserved_micro_credits == CREDIT


class ReplyDroppingProxy(CuttableProxy):
    """Forwards calls to the server; while `dropping`, its replies never reach the client."""

    dropping = False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        self._writers.update((writer, upstream_writer))
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._replies(upstream_reader, writer)
        )

    async def _replies(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                if not self.dropping:
                    writer.write(data)
                    await writer.drain()
        writer.close()


async def test_a_retry_after_a_reply_lost_on_the_way_back_returns_the_first_result(
    credits: Credits,
) -> None:
    proxy = ReplyDroppingProxy("127.0.0.1", credits.port)
    await proxy.start()
    wallet = new_wallet_address()
    await credits.grant(wallet, 10 * CREDIT)
    request = credits_pb2.ReserveCreditsRequest(
        wallet_address=wallet, amount_micro_credits=CREDIT, idempotency_key="reserve-dropped"
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{proxy.port}") as lossy:
            lossy_stub = credits_pb2_grpc.CreditsServiceStub(lossy)
            await lossy_stub.GetBalance(credits_pb2.GetBalanceRequest(wallet_address=wallet))
            proxy.dropping = True
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await lossy_stub.ReserveCredits(request, metadata=INTERNAL, timeout=1.0)
    finally:
        await proxy.cut()
    assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    # The server did the work: the hold is stored though its reply never arrived.
    stored = (await stored_rows(credits.settings))["reservations"]
    assert [row.state for row in stored] == ["HELD"]

    retried = await credits.stub.ReserveCredits(request, metadata=INTERNAL, timeout=10)

    assert retried.reservation.reservation_id == stored[0].reservation_id
    balance = await credits.balance(wallet)
    assert (balance.available_micro_credits, balance.reserved_micro_credits) == (
        9 * CREDIT,
        CREDIT,
    )
