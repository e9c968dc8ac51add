"""What the users service asks of credits and mining, and what it makes of their silence.

A peer that cannot answer (down, too slow, not built yet) costs only its own fields: the
answer is None, and the caller's response leaves those fields out rather than inventing zeros.
A peer going silent is expected (until credits and mining are built, always), so it is logged
when it changes: one warning when a peer stops answering, one line when it answers again
with how many calls it missed; never a line per request.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TypeVar

import grpc
from r3mes.credits.v1 import credits_pb2, credits_pb2_grpc
from r3mes.mining.v1 import mining_pb2, mining_pb2_grpc

from services.core.wire import utc_datetime
from services.users.domain import NOT_A_MINER, Balance, MiningStatus, MiningSummary

logger = logging.getLogger(__name__)

ResponseT = TypeVar("ResponseT")


class Peers:
    def __init__(
        self,
        credits: credits_pb2_grpc.CreditsServiceAsyncStub,
        mining: mining_pb2_grpc.MiningServiceAsyncStub,
    ) -> None:
        self._credits = credits
        self._mining = mining
        self._states = PeerStates()

    async def balance(self, wallet_address: str) -> Balance | None:
        request = credits_pb2.GetBalanceRequest(wallet_address=wallet_address)
        response = await self._ask("credits", "GetBalance", self._credits.GetBalance(request))
        if response is None:
            return None
        return Balance(
            available_micro_credits=response.balance.available_micro_credits,
            reserved_micro_credits=response.balance.reserved_micro_credits,
        )

    async def mining_status(self, wallet_address: str) -> MiningStatus | None:
        request = mining_pb2.GetMinerStatsRequest(wallet_address=wallet_address)
        try:
            response = await self._mining.GetMinerStats(request)
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.NOT_FOUND:
                self._states.answered("mining")
                return NOT_A_MINER
            self._states.failed("mining", "GetMinerStats", error)
            return None
        self._states.answered("mining")
        stats = response.stats
        last = utc_datetime(stats.last_report_time) if stats.HasField("last_report_time") else None
        return MiningStatus(is_miner=True, last_mining_time=last)

    async def credits_total(self) -> int | None:
        request = credits_pb2.GetCreditsTotalRequest()
        response = await self._ask(
            "credits", "GetCreditsTotal", self._credits.GetCreditsTotal(request)
        )
        return None if response is None else response.total_micro_credits

    async def mining_summary(self) -> MiningSummary | None:
        request = mining_pb2.GetNetworkSummaryRequest()
        response = await self._ask(
            "mining", "GetNetworkSummary", self._mining.GetNetworkSummary(request)
        )
        if response is None:
            return None
        return MiningSummary(
            active_miners=response.active_miners, block_height=response.block_height
        )

    async def _ask(self, peer: str, method: str, call: Awaitable[ResponseT]) -> ResponseT | None:
        try:
            response = await call
        except grpc.aio.AioRpcError as error:
            self._states.failed(peer, method, error)
            return None
        self._states.answered(peer)
        return response


class PeerStates:
    """Which peers stopped answering, and how many calls each has missed since."""

    def __init__(self) -> None:
        self._unanswered: dict[str, int] = {}

    def failed(self, peer: str, method: str, error: grpc.aio.AioRpcError) -> None:
        missed = self._unanswered.get(peer, 0)
        self._unanswered[peer] = missed + 1
        if missed == 0:
            logger.warning(
                "peer stopped answering; its fields are left out until it answers again",
                extra={"peer": peer, "peer_method": method, "code": error.code().name},
            )

    def answered(self, peer: str) -> None:
        missed = self._unanswered.pop(peer, 0)
        if missed:
            logger.info("peer answers again", extra={"peer": peer, "unanswered_calls": missed})
