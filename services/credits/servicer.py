"""CreditsService: each RPC converts the request, calls its use case, converts the result."""

from __future__ import annotations

from typing import Any

import grpc
from r3mes.credits.v1 import credits_pb2, credits_pb2_grpc

from services.core.page_tokens import PageTokens
from services.core.wire import timestamp
from services.credits.domain import Balance, LedgerEntry, Reservation, saturate
from services.credits.usecases import CreditsUseCases

Context = grpc.aio.ServicerContext[Any, Any]


class CreditsServicer(credits_pb2_grpc.CreditsServiceServicer):
    def __init__(self, use_cases: CreditsUseCases, tokens: PageTokens) -> None:
        self._use_cases = use_cases
        self._tokens = tokens

    async def GetBalance(
        self, request: credits_pb2.GetBalanceRequest, context: Context
    ) -> credits_pb2.GetBalanceResponse:
        balance = await self._use_cases.balance(request.wallet_address)
        return credits_pb2.GetBalanceResponse(balance=balance_message(balance))

    async def GrantCredits(
        self, request: credits_pb2.GrantCreditsRequest, context: Context
    ) -> credits_pb2.GrantCreditsResponse:
        movement = await self._use_cases.grant(
            request.wallet_address,
            request.amount_micro_credits,
            request.description,
            request.idempotency_key,
        )
        return credits_pb2.GrantCreditsResponse(
            ledger_entry=entry_message(movement.entry), balance=balance_message(movement.balance)
        )

    async def ReserveCredits(
        self, request: credits_pb2.ReserveCreditsRequest, context: Context
    ) -> credits_pb2.ReserveCreditsResponse:
        hold = await self._use_cases.reserve(
            request.wallet_address,
            request.amount_micro_credits,
            request.ttl_seconds,
            request.description,
            request.idempotency_key,
        )
        return credits_pb2.ReserveCreditsResponse(
            reservation=reservation_message(hold.reservation), balance=balance_message(hold.balance)
        )

    async def ConfirmReservation(
        self, request: credits_pb2.ConfirmReservationRequest, context: Context
    ) -> credits_pb2.ConfirmReservationResponse:
        amount = request.amount_micro_credits if request.HasField("amount_micro_credits") else None
        capture = await self._use_cases.confirm(
            request.reservation_id, amount, request.idempotency_key
        )
        return credits_pb2.ConfirmReservationResponse(
            reservation=reservation_message(capture.reservation),
            ledger_entry=entry_message(capture.entry),
            balance=balance_message(capture.balance),
        )

    async def RollbackReservation(
        self, request: credits_pb2.RollbackReservationRequest, context: Context
    ) -> credits_pb2.RollbackReservationResponse:
        hold = await self._use_cases.roll_back(request.reservation_id, request.idempotency_key)
        return credits_pb2.RollbackReservationResponse(
            reservation=reservation_message(hold.reservation), balance=balance_message(hold.balance)
        )

    async def DeductCredits(
        self, request: credits_pb2.DeductCreditsRequest, context: Context
    ) -> credits_pb2.DeductCreditsResponse:
        movement = await self._use_cases.deduct(
            request.wallet_address,
            request.amount_micro_credits,
            request.description,
            request.idempotency_key,
        )
        return credits_pb2.DeductCreditsResponse(
            ledger_entry=entry_message(movement.entry), balance=balance_message(movement.balance)
        )

    async def ListLedgerEntries(
        self, request: credits_pb2.ListLedgerEntriesRequest, context: Context
    ) -> credits_pb2.ListLedgerEntriesResponse:
        page = await self._use_cases.ledger(
            request.wallet_address, self._tokens.request_of(request)
        )
        return credits_pb2.ListLedgerEntriesResponse(
            ledger_entries=[entry_message(entry) for entry in page.items],
            next_page_token=self._tokens.next_token(request, page),
        )

    async def GetCreditsTotal(
        self, request: credits_pb2.GetCreditsTotalRequest, context: Context
    ) -> credits_pb2.GetCreditsTotalResponse:
        total = await self._use_cases.network_total()
        return credits_pb2.GetCreditsTotalResponse(
            total_micro_credits=saturate(total.total),
            available_micro_credits=saturate(total.available),
            reserved_micro_credits=saturate(total.reserved),
            saturated=total.saturated,
        )


def balance_message(balance: Balance) -> credits_pb2.Balance:
    message = credits_pb2.Balance(
        wallet_address=balance.wallet_address,
        available_micro_credits=balance.available,
        reserved_micro_credits=balance.reserved,
        total_micro_credits=balance.total,
    )
    if balance.update_time is not None:
        message.update_time.CopyFrom(timestamp(balance.update_time))
    return message


def reservation_message(reservation: Reservation) -> credits_pb2.Reservation:
    message = credits_pb2.Reservation(
        reservation_id=reservation.reservation_id,
        wallet_address=reservation.wallet_address,
        amount_micro_credits=reservation.amount,
        captured_micro_credits=reservation.captured,
        state=credits_pb2.ReservationState.Value(f"RESERVATION_STATE_{reservation.state.value}"),
        description=reservation.description,
        create_time=timestamp(reservation.create_time),
        expire_time=timestamp(reservation.expire_time),
    )
    if reservation.close_time is not None:
        message.close_time.CopyFrom(timestamp(reservation.close_time))
    return message


def entry_message(entry: LedgerEntry) -> credits_pb2.LedgerEntry:
    return credits_pb2.LedgerEntry(
        entry_id=entry.entry_id,
        wallet_address=entry.wallet_address,
        kind=credits_pb2.LedgerEntryKind.Value(f"LEDGER_ENTRY_KIND_{entry.kind.value}"),
        delta_micro_credits=entry.delta,
        balance_after_micro_credits=entry.balance_after,
        reservation_id=entry.reservation_id or "",
        description=entry.description,
        create_time=timestamp(entry.create_time),
    )
