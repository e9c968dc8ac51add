"""MiningService: each RPC converts the request, calls its use case, converts the result."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from google.type import date_pb2
from r3mes.mining.v1 import mining_pb2, mining_pb2_grpc

from services.core.errors import InvalidArgument
from services.core.page_tokens import PageTokens
from services.core.wire import timestamp, utc_datetime
from services.mining.domain import Block, MinerStats, NewBlock, NewReport, StatsReport
from services.mining.usecases import MiningUseCases

Context = grpc.aio.ServicerContext[Any, Any]


class MiningServicer(mining_pb2_grpc.MiningServiceServicer):
    def __init__(self, use_cases: MiningUseCases, tokens: PageTokens) -> None:
        self._use_cases = use_cases
        self._tokens = tokens

    async def RecordMiningStats(
        self, request: mining_pb2.RecordMiningStatsRequest, context: Context
    ) -> mining_pb2.RecordMiningStatsResponse:
        report = await self._use_cases.record_stats(new_report(request))
        return mining_pb2.RecordMiningStatsResponse(report=report_message(report))

    async def BatchRecordMiningStats(
        self, request: mining_pb2.BatchRecordMiningStatsRequest, context: Context
    ) -> mining_pb2.BatchRecordMiningStatsResponse:
        reports = await self._use_cases.batch_record_stats(
            [
                new_report(entry, prefix=f"requests[{index}].")
                for index, entry in enumerate(request.requests)
            ]
        )
        return mining_pb2.BatchRecordMiningStatsResponse(
            reports=[report_message(report) for report in reports]
        )

    async def GetMinerStats(
        self, request: mining_pb2.GetMinerStatsRequest, context: Context
    ) -> mining_pb2.GetMinerStatsResponse:
        stats = await self._use_cases.miner_stats(request.wallet_address)
        return mining_pb2.GetMinerStatsResponse(stats=stats_message(stats))

    async def GetEarningsHistory(
        self, request: mining_pb2.GetEarningsHistoryRequest, context: Context
    ) -> mining_pb2.GetEarningsHistoryResponse:
        history = await self._use_cases.earnings_history(request.wallet_address, request.days)
        response = mining_pb2.GetEarningsHistoryResponse(
            total_earned_micro_credits=history.total_earned_micro_credits
        )
        add = response.points.add
        for point in history.points:
            _set_date(add(earned_micro_credits=point.earned_micro_credits).date, point.day)
        return response

    async def GetHashrateHistory(
        self, request: mining_pb2.GetHashrateHistoryRequest, context: Context
    ) -> mining_pb2.GetHashrateHistoryResponse:
        points = await self._use_cases.hashrate_history(request.wallet_address, request.days)
        response = mining_pb2.GetHashrateHistoryResponse()
        # Points are added in place: a year of them is the bulk of the call's cost, and
        # building each point and its date as separate messages costs about three times more.
        add = response.points.add
        for point in points:
            added = add(average_hashrate=point.average_hashrate, peak_hashrate=point.peak_hashrate)
            _set_date(added.date, point.day)
        return response

    async def RecordBlock(
        self, request: mining_pb2.RecordBlockRequest, context: Context
    ) -> mining_pb2.RecordBlockResponse:
        block = await self._use_cases.record_block(
            NewBlock(
                height=request.height,
                block_hash=request.block_hash,
                miner_wallet_address=request.miner_wallet_address,
                reward_micro_credits=request.reward_micro_credits,
                block_time=_moment(request.block_time, "block_time"),
                idempotency_key=request.idempotency_key,
            )
        )
        return mining_pb2.RecordBlockResponse(block=block_message(block))

    async def ListBlocks(
        self, request: mining_pb2.ListBlocksRequest, context: Context
    ) -> mining_pb2.ListBlocksResponse:
        page = await self._use_cases.list_blocks(
            request.miner_wallet_address or None, self._tokens.request_of(request)
        )
        return mining_pb2.ListBlocksResponse(
            blocks=[block_message(block) for block in page.items],
            next_page_token=self._tokens.next_token(request, page),
        )

    async def GetNetworkSummary(
        self, request: mining_pb2.GetNetworkSummaryRequest, context: Context
    ) -> mining_pb2.GetNetworkSummaryResponse:
        summary = await self._use_cases.network_summary()
        response = mining_pb2.GetNetworkSummaryResponse(
            active_miners=summary.active_miners,
            total_miners=summary.total_miners,
            block_height=summary.block_height,
            network_hashrate=summary.network_hashrate,
        )
        if summary.latest_block_time is not None:
            response.latest_block_time.CopyFrom(timestamp(summary.latest_block_time))
        return response


def new_report(request: mining_pb2.RecordMiningStatsRequest, prefix: str = "") -> NewReport:
    observe = (
        _moment(request.observe_time, f"{prefix}observe_time")
        if request.HasField("observe_time")
        else None
    )
    return NewReport(
        wallet_address=request.wallet_address,
        hashrate=request.hashrate,
        earned_micro_credits=request.earned_micro_credits,
        observe_time=observe,
        idempotency_key=request.idempotency_key,
    )


def report_message(report: StatsReport) -> mining_pb2.MiningStatsReport:
    return mining_pb2.MiningStatsReport(
        wallet_address=report.wallet_address,
        hashrate=report.hashrate,
        earned_micro_credits=report.earned_micro_credits,
        observe_time=timestamp(report.observe_time),
        record_time=timestamp(report.record_time),
    )


def stats_message(stats: MinerStats) -> mining_pb2.MinerStats:
    return mining_pb2.MinerStats(
        wallet_address=stats.wallet_address,
        current_hashrate=stats.current_hashrate,
        total_earned_micro_credits=stats.total_earned_micro_credits,
        blocks_found=stats.blocks_found,
        report_count=stats.report_count,
        active=stats.active,
        first_report_time=timestamp(stats.first_report_time),
        last_report_time=timestamp(stats.last_report_time),
    )


def block_message(block: Block) -> mining_pb2.Block:
    return mining_pb2.Block(
        height=block.height,
        block_hash=block.block_hash,
        miner_wallet_address=block.miner_wallet_address,
        reward_micro_credits=block.reward_micro_credits,
        block_time=timestamp(block.block_time),
        record_time=timestamp(block.record_time),
    )


def _set_date(message: date_pb2.Date, day: date) -> None:
    message.year, message.month, message.day = day.year, day.month, day.day


def _moment(stamp: Timestamp, field: str) -> datetime:
    """A request's time; one outside what a Timestamp may hold (years 1..9999) is invalid."""
    try:
        return utc_datetime(stamp)
    except ValueError:
        raise InvalidArgument.for_field(field, "is not a valid time") from None
