"""The operations of the mining service: plain values in, domain objects out, one unit of work
each. A report is recorded with its rollups and totals in one transaction; reads of histories
touch the rollups only."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.core.clock import Clock
from services.core.errors import (
    InvalidArgument,
)
from services.core.idempotency import KeyClaim, fingerprint_of
from services.core.pagination import Page, PageRequest
from services.core.uow import UnitOfWork
from services.mining import metrics
from services.mining.domain import (
    ACTIVE_WINDOW,
    CURRENT_HASHRATE_WINDOW,
    Block,
    EarningsLimitExceeded,
    EarningsPoint,
    HashratePoint,
    MinerNotFound,
    MinerStats,
    NetworkSummary,
    NewBlock,
    NewReport,
    StatsReport,
    batch_violations,
    day_rollups,
    earnings_points,
    hashrate_points,
    history_days,
    is_hex,
    miner_stats,
    miner_totals,
    report_violations,
    utc_day,
)
from services.mining.repository import MiningRepositories

RECORD_STATS_SCOPE = "RecordMiningStats"  # a batch entry shares the scope of RecordMiningStats
RECORD_BLOCK_SCOPE = "RecordBlock"
PRUNE_CHUNK = 10_000


@dataclass(frozen=True)
class EarningsHistory:
    points: list[EarningsPoint]
    total_earned_micro_credits: int


class MiningUseCases:
    def __init__(self, uow: UnitOfWork[MiningRepositories], clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def record_stats(self, report: NewReport) -> StatsReport:
        violations = report_violations(report, self._clock())
        if violations:
            raise InvalidArgument.for_fields(violations)
        [recorded] = await self._record([report], batch=False)
        return recorded

    async def batch_record_stats(self, reports: Sequence[NewReport]) -> list[StatsReport]:
        """All entries or none: one unit of work; entries recorded before are replayed."""
        violations = batch_violations(reports, self._clock())
        if violations:
            raise InvalidArgument.for_fields(violations)
        return await self._record(reports, batch=True)

    async def _record(self, reports: Sequence[NewReport], *, batch: bool) -> list[StatsReport]:
        now = self._clock()
        new = [
            StatsReport(
                report.wallet_address,
                report.hashrate,
                report.earned_micro_credits,
                report.observe_time or now,
                now,
            )
            for report in reports
        ]
        claims = [
            KeyClaim(
                report.idempotency_key,
                fingerprint_of(RECORD_STATS_SCOPE, _report_parameters(report)),
                _encode_report(recorded),
            )
            for report, recorded in zip(reports, new, strict=True)
        ]

        async for attempt in self._uow.attempts():
            async with attempt as r:
                stored = await r.idempotency.remembered_many(
                    RECORD_STATS_SCOPE, claims, now, batch=batch
                )
                answers: list[StatsReport] = []
                fresh: list[StatsReport] = []
                for recorded, earlier in zip(new, stored, strict=True):
                    if earlier is None:
                        fresh.append(recorded)
                        answers.append(recorded)
                    else:
                        answers.append(_replay_report(earlier))
                # The effects of the new entries together: the raw rows in one statement, each
                # day's rollup and each miner's totals added to in one statement each.
                await r.reports.add_many(fresh)
                await r.rollups.add_many(day_rollups(fresh))
                await r.miners.add_many(miner_totals(fresh))
                # Checked after the additions, on rows this unit now holds locked, so concurrent
                # batches cannot both pass it; a refusal rolls everything back. The additions
                # cannot overflow: a batch adds at most 10^18 to a total of at most 10^18.
                earning = sorted(
                    {report.wallet_address for report in fresh if report.earned_micro_credits}
                )
                if earning:
                    over = await r.miners.first_past_earnings_limit(earning)
                    if over is not None:
                        raise EarningsLimitExceeded(over)
        # The loop ends only after an attempt committed: `fresh` and `answers` are its own.
        metrics.REPORTS_RECORDED.inc(len(fresh))
        return answers

    async def record_block(self, block: NewBlock) -> Block:
        if not is_hex(block.block_hash):
            raise InvalidArgument.for_field("block_hash", "must be hexadecimal")
        now = self._clock()
        new = Block(
            block.height,
            block.block_hash.lower(),
            block.miner_wallet_address,
            block.reward_micro_credits,
            block.block_time,
            now,
        )
        parameters = {
            "height": new.height,
            "block_hash": new.block_hash,
            "miner_wallet_address": new.miner_wallet_address,
            "reward_micro_credits": new.reward_micro_credits,
            "block_time": new.block_time.isoformat(),
        }

        async for attempt in self._uow.attempts():
            async with attempt as r:
                replay = await r.idempotency.claim(
                    RECORD_BLOCK_SCOPE, block.idempotency_key, parameters, now
                )
                if replay is None:
                    recorded: Block | None = await r.blocks.add(new)
                    await r.idempotency.record(
                        RECORD_BLOCK_SCOPE, block.idempotency_key, str(new.height)
                    )
                else:
                    recorded = await r.blocks.find(height=int(replay))
        assert recorded is not None, "a remembered block is never deleted"
        return recorded

    async def miner_stats(self, wallet_address: str) -> MinerStats:
        now = self._clock()

        found = await self._uow.run(
            lambda repositories: repositories.miners.with_blocks_found(wallet_address),
            read_only=True,
            one_statement=True,
        )
        if found is None:
            raise MinerNotFound(wallet_address)
        return miner_stats(*found, now)

    async def earnings_history(self, wallet_address: str, days: int) -> EarningsHistory:
        today = utc_day(self._clock())
        rollups = await self._uow.run(
            lambda repositories: repositories.rollups.between(
                wallet_address, history_days(today, days)[0], today
            ),
            read_only=True,
            one_statement=True,
        )
        points = earnings_points(rollups, today, days)
        return EarningsHistory(points, sum(point.earned_micro_credits for point in points))

    async def hashrate_history(self, wallet_address: str, days: int) -> list[HashratePoint]:
        today = utc_day(self._clock())
        rollups = await self._uow.run(
            lambda repositories: repositories.rollups.between(
                wallet_address, history_days(today, days)[0], today
            ),
            read_only=True,
            one_statement=True,
        )
        return hashrate_points(rollups, today, days)

    async def list_blocks(
        self, miner_wallet_address: str | None, page_request: PageRequest
    ) -> Page[Block]:
        return await self._uow.run(
            lambda repositories: repositories.blocks.listed(miner_wallet_address, page_request),
            read_only=True,
            one_statement=True,
        )

    async def network_summary(self) -> NetworkSummary:
        now = self._clock()

        async for attempt in self._uow.attempts(read_only=True):
            async with attempt as r:
                highest = await r.blocks.highest()
                summary = NetworkSummary(
                    active_miners=await r.miners.active_since(now - ACTIVE_WINDOW),
                    total_miners=await r.miners.count(),
                    block_height=0 if highest is None else highest.height,
                    network_hashrate=await r.miners.hashrate_since(now - CURRENT_HASHRATE_WINDOW),
                    latest_block_time=None if highest is None else highest.block_time,
                )
        return summary

    async def highest_block(self) -> int:
        """Height of the highest recorded block, 0 when none is (where the indexer resumes)."""
        highest = await self._uow.run(
            lambda repositories: repositories.blocks.highest(), read_only=True, one_statement=True
        )
        return 0 if highest is None else highest.height

    async def prune_reports(self, retention: timedelta) -> int:
        """Forget raw reports observed longer ago than the retention, a bounded chunk per unit
        of work; rollups and totals are kept, so no read changes."""
        cutoff = self._clock() - retention
        pruned = 0
        while True:
            count = await self._uow.run(
                lambda repositories: repositories.reports.prune(cutoff, PRUNE_CHUNK)
            )
            pruned += count
            if count < PRUNE_CHUNK:
                return pruned


def _report_parameters(report: NewReport) -> dict[str, object]:
    # The observe time as asked (None: when received), so a retry of an entry without one
    # matches its first call.
    observe = None if report.observe_time is None else report.observe_time.isoformat()
    return {
        "wallet_address": report.wallet_address,
        "hashrate": report.hashrate,
        "earned_micro_credits": report.earned_micro_credits,
        "observe_time": observe,
    }


def _encode_report(report: StatsReport) -> str:
    # The report itself, not a row id: a repeat replays it even after its raw row is pruned.
    return json.dumps(
        {
            "wallet_address": report.wallet_address,
            "hashrate": report.hashrate,
            "earned_micro_credits": report.earned_micro_credits,
            "observe_time": report.observe_time.isoformat(),
            "record_time": report.record_time.isoformat(),
        }
    )


def _replay_report(stored: str) -> StatsReport:
    fields = json.loads(stored)
    return StatsReport(
        fields["wallet_address"],
        float(fields["hashrate"]),
        int(fields["earned_micro_credits"]),
        datetime.fromisoformat(fields["observe_time"]),
        datetime.fromisoformat(fields["record_time"]),
    )
