"""The credits service as serving uses it: reservations, captures, releases and grants, on
serving's own authority (the internal token; in-process when co-hosted)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from r3mes.credits.v1 import credits_pb2, credits_pb2_grpc

from services.serving.domain import CreditsUnavailable, InsufficientCredits, SettlementRefused
from services.serving.usecases import RESERVATION_TTL_SECONDS, Held

INSUFFICIENT = "INSUFFICIENT_CREDITS"


class CreditsPeer:
    """Implements services.serving.usecases.chat.Credits."""

    def __init__(self, stub: credits_pb2_grpc.CreditsServiceAsyncStub) -> None:
        self._stub = stub

    async def reserve(self, wallet: str, amount: int, key: str, description: str) -> Held:
        request = credits_pb2.ReserveCreditsRequest(
            wallet_address=wallet,
            amount_micro_credits=amount,
            ttl_seconds=RESERVATION_TTL_SECONDS,
            description=description,
            idempotency_key=key,
        )
        try:
            response = await self._stub.ReserveCredits(request)
        except grpc.aio.AioRpcError as error:
            info = _error_info(error)
            if info is not None and info.reason == INSUFFICIENT:
                available = info.metadata.get("available_micro_credits")
                raise InsufficientCredits(amount, int(available) if available else None) from None
            raise CreditsUnavailable() from None
        return Held(response.reservation.reservation_id, response.balance.available_micro_credits)

    async def confirm(self, reservation_id: str, amount: int, key: str) -> None:
        request = credits_pb2.ConfirmReservationRequest(
            reservation_id=reservation_id, amount_micro_credits=amount, idempotency_key=key
        )
        await self._call(self._stub.ConfirmReservation(request))

    async def rollback(self, reservation_id: str, key: str) -> None:
        request = credits_pb2.RollbackReservationRequest(
            reservation_id=reservation_id, idempotency_key=key
        )
        await self._call(self._stub.RollbackReservation(request))

    async def grant(self, wallet: str, amount: int, key: str, description: str) -> None:
        request = credits_pb2.GrantCreditsRequest(
            wallet_address=wallet,
            amount_micro_credits=amount,
            description=description,
            idempotency_key=key,
        )
        await self._call(self._stub.GrantCredits(request))

    @staticmethod
    async def _call(call: Awaitable[Any]) -> None:
        try:
            await call
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND):
                raise SettlementRefused(error.details() or error.code().name) from None
            raise CreditsUnavailable() from None


def _error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo | None:
    status = rpc_status.from_call(error)
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None
