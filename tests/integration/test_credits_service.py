"""The credits service's state machine through a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, timedelta

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from r3mes.credits.v1 import credits_pb2

from services.core.testing import new_wallet_address
from tests.integration.credits_support import (
    CREDIT,
    INTERNAL,
    Credits,
    assert_invariants,
    seed_grant,
)
from tests.integration.rpc import failure_of

HELD = credits_pb2.RESERVATION_STATE_HELD
CONFIRMED = credits_pb2.RESERVATION_STATE_CONFIRMED
ROLLED_BACK = credits_pb2.RESERVATION_STATE_ROLLED_BACK


async def refused(call: Awaitable[object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    failure = failure_of(raised.value)
    assert failure.domain == "credits.r3mes.network"
    return failure.code, failure.reason


async def test_a_wallet_that_never_had_credits_reads_zero_without_an_update_time(
    credits: Credits,
) -> None:
    wallet = new_wallet_address()

    balance = await credits.balance(wallet)

    assert balance.wallet_address == wallet
    assert (balance.available_micro_credits, balance.reserved_micro_credits) == (0, 0)
    assert balance.total_micro_credits == 0
    assert not balance.HasField("update_time")


async def test_a_grant_adds_to_available_and_is_one_ledger_entry(credits: Credits) -> None:
    wallet = new_wallet_address()

    first = await credits.grant(wallet, 7 * CREDIT)
    second = await credits.grant(wallet, 3)

    assert first.ledger_entry.kind == credits_pb2.LEDGER_ENTRY_KIND_GRANT
    assert first.ledger_entry.delta_micro_credits == 7 * CREDIT
    assert first.ledger_entry.balance_after_micro_credits == 7 * CREDIT
    assert second.ledger_entry.balance_after_micro_credits == 7 * CREDIT + 3
    assert second.balance.available_micro_credits == 7 * CREDIT + 3
    assert second.balance.update_time.ToDatetime(UTC) == credits.clock()
    balance = await credits.balance(wallet)
    assert balance.available_micro_credits == 7 * CREDIT + 3
    assert balance.total_micro_credits == 7 * CREDIT + 3


async def test_a_reservation_moves_credits_from_available_to_reserved_until_it_expires(
    credits: Credits,
) -> None:
    wallet = new_wallet_address()
    await credits.grant(wallet, 10 * CREDIT)

    default = await credits.reserve(wallet, 4 * CREDIT)
    short = await credits.reserve(wallet, 1 * CREDIT, ttl_seconds=30)

    reservation = default.reservation
    assert reservation.state == HELD
    assert (reservation.wallet_address, reservation.amount_micro_credits) == (wallet, 4 * CREDIT)
    assert reservation.captured_micro_credits == 0
    assert reservation.create_time.ToDatetime(UTC) == credits.clock()
    assert reservation.expire_time.ToDatetime(UTC) == credits.clock() + timedelta(seconds=300)
    assert not reservation.HasField("close_time")
    assert short.reservation.expire_time.ToDatetime(UTC) == credits.clock() + timedelta(seconds=30)
    assert short.balance.available_micro_credits == 5 * CREDIT
    assert short.balance.reserved_micro_credits == 5 * CREDIT
    assert short.balance.total_micro_credits == 10 * CREDIT
    assert len(reservation.reservation_id) >= 32
    assert reservation.reservation_id != short.reservation.reservation_id


async def test_reserving_more_than_is_available_is_insufficient_credits_with_the_available_amount(
    credits: Credits,
) -> None:
    wallet = new_wallet_address()
    await credits.grant(wallet, 5 * CREDIT)
    await credits.reserve(wallet, 3 * CREDIT)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await credits.reserve(wallet, 2 * CREDIT + 1)

    failure = failure_of(raised.value)
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "INSUFFICIENT_CREDITS",
    )
    status = rpc_status.from_call(raised.value)
    assert status is not None
    infos, preconditions = [], []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            infos.append(error_details_pb2.ErrorInfo())
            detail.Unpack(infos[-1])
        if detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            preconditions.append(error_details_pb2.PreconditionFailure())
            detail.Unpack(preconditions[-1])
    assert infos[0].metadata["available_micro_credits"] == str(2 * CREDIT)
    assert [v.type for v in preconditions[0].violations] == ["INSUFFICIENT_CREDITS"]
    balance = await credits.balance(wallet)
    assert (balance.available_micro_credits, balance.reserved_micro_credits) == (
        2 * CREDIT,
        3 * CREDIT,
    )


async def test_a_wallet_without_an_account_cannot_reserve_or_be_charged(credits: Credits) -> None:
    wallet = new_wallet_address()

    assert await refused(credits.reserve(wallet, 1)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "INSUFFICIENT_CREDITS",
    )
    assert await refused(credits.deduct(wallet, 1)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "INSUFFICIENT_CREDITS",
    )


async def test_confirming_all_of_a_hold_captures_it_as_one_ledger_entry(credits: Credits) -> None:
    wallet = new_wallet_address()
    await credits.grant(wallet, 10 * CREDIT)
    hold = (await credits.reserve(wallet, 4 * CREDIT)).reservation
    credits.clock.advance(seconds=10)

    confirmed = await credits.confirm(hold.reservation_id)

    assert confirmed.reservation.state == CONFIRMED
    assert confirmed.reservation.captured_micro_credits == 4 * CREDIT
    assert confirmed.reservation.close_time.ToDatetime(UTC) == credits.clock()
    entry = confirmed.ledger_entry
    assert entry.kind == credits_pb2.LEDGER_ENTRY_KIND_CAPTURE
    assert (entry.delta_micro_credits, entry.balance_after_micro_credits) == (
        -4 * CREDIT,
        6 * CREDIT,
    )
    assert entry.reservation_id == hold.reservation_id
    assert confirmed.balance.available_micro_credits == 6 * CREDIT
    assert confirmed.balance.reserved_micro_credits == 0


async def test_confirming_part_of_a_hold_releases_the_rest(credits: Credits) -> None:
    wallet = new_wallet_address()
    await credits.grant(wallet, 10 * CREDIT)
    hold = (await credits.reserve(wallet, 4 * CREDIT)).reservation

    confirmed = await credits.confirm(hold.reservation_id, amount=1_500_000)

    assert confirmed.reservation.captured_micro_credits == 1_500_000
    assert confirmed.reservation.amount_micro_credits == 4 * CREDIT
    assert confirmed.ledger_entry.delta_micro_credits == -1_500_000
    assert confirmed.balance.available_micro_credits == 10 * CREDIT - 1_500_000
    assert confirmed.balance.reserved_micro_credits == 0


async def test_capturing_more_than_the_hold_is_refused_and_the_hold_stays(credits: Credits) -> None:
    wallet = new_wallet_address()
    await credits.grant(wallet, 10 * CREDIT)
    hold = (await credits.reserve(wallet, 4 * CREDIT)).reservation

    assert await refused(credits.confirm(hold.reservation_id, amount=4 * CREDIT + 1)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "AMOUNT_EXCEEDS_RESERVATION",
    )

    balance = await credits.balance(wallet)
    assert balance.reserved_micro_credits == 4 * CREDIT
    assert (await credits.confirm(hold.reservation_id, amount=4 * CREDIT)).reservation.state == (
        CONFIRMED
    )


async def test_a_rollback_releases_the_whole_hold_without_a_ledger_entry(credits: Credits) -> None:
    wallet = new_wallet_address()
    await credits.grant(wallet, 10 * CREDIT)
    hold = (await credits.reserve(wallet, 4 * CREDIT)).reservation

    rolled_back = await credits.roll_back(hold.reservation_id)

    assert rolled_back.reservation.state == ROLLED_BACK
    assert rolled_back.reservation.captured_micro_credits == 0
    assert rolled_back.reservation.HasField("close_time")
    assert rolled_back.balance.available_micro_credits == 10 * CREDIT
    assert rolled_back.balance.reserved_micro_credits == 0
    rows = await assert_invariants(credits)
    assert [entry.kind for entry in rows["ledger"]] == ["GRANT"]


async def test_each_hold_resolves_once_and_later_calls_name_how_it_was_resolved(
    credits: Credits,
) -> None:
    wallet = new_wallet_address()
    await credits.grant(wallet, 10 * CREDIT)
    confirmed = (await credits.reserve(wallet, CREDIT)).reservation.reservation_id
    rolled_back = (await credits.reserve(wallet, CREDIT)).reservation.reservation_id
    await credits.confirm(confirmed)
    first_rollback = await credits.roll_back(rolled_back)

    precondition = grpc.StatusCode.FAILED_PRECONDITION
    assert await refused(credits.confirm(confirmed)) == (
        precondition,
        "RESERVATION_ALREADY_CONFIRMED",
    )
    assert await refused(credits.roll_back(confirmed)) == (
        precondition,
        "RESERVATION_ALREADY_CONFIRMED",
    )
    assert await refused(credits.confirm(rolled_back)) == (
        precondition,
        "RESERVATION_ALREADY_ROLLED_BACK",
    )
    again = await credits.roll_back(rolled_back)
    assert again.reservation == first_rollback.reservation
    balance = await credits.balance(wallet)
    assert (balance.available_micro_credits, balance.reserved_micro_credits) == (9 * CREDIT, 0)


async def test_an_unknown_reservation_is_not_found(credits: Credits) -> None:
    for call in (credits.confirm("no-such-reservation"), credits.roll_back("no-such-reservation")):
        assert await refused(call) == (grpc.StatusCode.NOT_FOUND, "RESERVATION_NOT_FOUND")


async def test_a_deduction_takes_from_available_at_once_and_never_overdraws(
    credits: Credits,
) -> None:
    wallet = new_wallet_address()
    await credits.grant(wallet, 5 * CREDIT)
    await credits.reserve(wallet, 2 * CREDIT)

    deducted = await credits.deduct(wallet, 3 * CREDIT)

    assert deducted.ledger_entry.kind == credits_pb2.LEDGER_ENTRY_KIND_DEDUCTION
    assert deducted.ledger_entry.delta_micro_credits == -3 * CREDIT
    assert deducted.ledger_entry.balance_after_micro_credits == 2 * CREDIT
    assert deducted.balance.available_micro_credits == 0
    assert deducted.balance.reserved_micro_credits == 2 * CREDIT
    assert await refused(credits.deduct(wallet, 1)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "INSUFFICIENT_CREDITS",
    )


async def test_a_grant_past_the_balance_limit_is_refused_and_changes_nothing(
    credits: Credits,
) -> None:
    wallet = new_wallet_address()
    await seed_grant(credits, wallet, 10**18 - 10)
    await credits.grant(wallet, 10)  # 10^18 exactly: the limit, still allowed

    assert await refused(credits.grant(wallet, 1)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "BALANCE_LIMIT_EXCEEDED",
    )
    assert (await credits.balance(wallet)).total_micro_credits == 10**18


async def test_the_ledger_lists_newest_first_page_by_page(credits: Credits) -> None:
    wallet = new_wallet_address()
    for amount in range(1, 6):
        await credits.grant(wallet, amount)
        credits.clock.advance(seconds=1)
    await credits.grant(new_wallet_address(), 99)  # another wallet's entry is never listed

    deltas: list[int] = []
    token = ""
    pages = 0
    while True:
        page = await credits.stub.ListLedgerEntries(
            credits_pb2.ListLedgerEntriesRequest(
                wallet_address=wallet, page_size=2, page_token=token
            ),
            metadata=INTERNAL,
        )
        deltas += [entry.delta_micro_credits for entry in page.ledger_entries]
        pages += 1
        token = page.next_page_token
        if not token:
            break

    assert deltas == [5, 4, 3, 2, 1]
    assert pages == 3


async def test_a_page_token_of_another_wallet_is_invalid_argument(credits: Credits) -> None:
    wallet, other = new_wallet_address(), new_wallet_address()
    for _ in range(3):
        await credits.grant(wallet, 1)
    first = await credits.stub.ListLedgerEntries(
        credits_pb2.ListLedgerEntriesRequest(wallet_address=wallet, page_size=1), metadata=INTERNAL
    )

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await credits.stub.ListLedgerEntries(
            credits_pb2.ListLedgerEntriesRequest(
                wallet_address=other, page_size=1, page_token=first.next_page_token
            ),
            metadata=INTERNAL,
        )

    failure = failure_of(raised.value)
    assert failure.code is grpc.StatusCode.INVALID_ARGUMENT
    assert list(failure.bad_fields) == ["page_token"]


async def test_the_network_total_adds_every_wallet(credits: Credits) -> None:
    first, second = new_wallet_address(), new_wallet_address()
    await credits.grant(first, 3 * CREDIT)
    await credits.grant(second, 2 * CREDIT)
    await credits.reserve(second, CREDIT)
    await credits.deduct(first, CREDIT)

    total = await credits.stub.GetCreditsTotal(credits_pb2.GetCreditsTotalRequest())

    assert total.total_micro_credits == 4 * CREDIT
    assert total.available_micro_credits == 3 * CREDIT
    assert total.reserved_micro_credits == CREDIT
