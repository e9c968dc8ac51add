"""Queries of the mining schema.

Rollups and miner totals are added to with one conditional UPDATE of the row's own columns;
only when no row matched is the row inserted (and should a concurrent first report have
inserted it in between, the UPDATE runs again), so no report is ever lost to a race and no
read-then-write happens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, case, func, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.core.idempotency import IdempotencyRepository
from services.core.pagination import Page, PageRequest
from services.core.repository import BaseRepository
from services.mining import tables
from services.mining.domain import (
    Block,
    BlockAlreadyExists,
    DayRollup,
    MinerTotals,
    StatsReport,
)


class ReportRepository(BaseRepository[StatsReport]):
    table = tables.reports

    def to_domain(self, row: Row[Any]) -> StatsReport:
        return StatsReport(
            row.wallet_address,
            row.hashrate,
            row.earned_micro_credits,
            row.observe_time,
            row.record_time,
        )

    async def add_many(self, reports: Sequence[StatsReport]) -> None:
        """One multi-row INSERT: a full batch (1,000 rows, 5,000 parameters) stays under both
        engines' parameter limits."""
        if not reports:
            return
        rows = [
            {
                "wallet_address": report.wallet_address,
                "hashrate": report.hashrate,
                "earned_micro_credits": report.earned_micro_credits,
                "observe_time": report.observe_time,
                "record_time": report.record_time,
            }
            for report in reports
        ]
        await self.execute(insert(self.table).values(rows))

    async def prune(self, observed_before: datetime, limit: int) -> int:
        """Delete up to `limit` reports observed before the cutoff; returns how many. Bounded,
        so one pass never holds the write lock (or meets the statement timeout) for long."""
        c = self.table.c
        oldest = select(c.id).where(c.observe_time < observed_before).limit(limit)
        return await self.delete_matching(c.id.in_(oldest.scalar_subquery()))


class RollupRepository(BaseRepository[DayRollup]):
    table = tables.day_rollups

    def to_domain(self, row: Row[Any]) -> DayRollup:
        return DayRollup(
            row.wallet_address,
            row.day,
            row.report_count,
            row.earned_micro_credits,
            row.hashrate_sum,
            row.hashrate_max,
        )

    async def add(self, rollup: DayRollup) -> None:
        c = self.table.c
        peak = literal(rollup.hashrate_max, c.hashrate_max.type)
        await _add_or_insert(
            self,
            (c.wallet_address == rollup.wallet_address, c.day == rollup.day),
            {
                "report_count": c.report_count + rollup.report_count,
                "earned_micro_credits": c.earned_micro_credits + rollup.earned_micro_credits,
                "hashrate_sum": c.hashrate_sum + rollup.hashrate_sum,
                "hashrate_max": case((c.hashrate_max < peak, peak), else_=c.hashrate_max),
            },
            {
                "wallet_address": rollup.wallet_address,
                "day": rollup.day,
                "report_count": rollup.report_count,
                "earned_micro_credits": rollup.earned_micro_credits,
                "hashrate_sum": rollup.hashrate_sum,
                "hashrate_max": rollup.hashrate_max,
            },
        )

    async def between(self, wallet_address: str, first: date, last: date) -> list[DayRollup]:
        """The wallet's rollups of these days: at most one row per day, read by primary key."""
        c = self.table.c
        return await self.find_many(
            c.wallet_address == wallet_address, c.day >= first, c.day <= last, order_by=[c.day]
        )


class MinerRepository(BaseRepository[MinerTotals]):
    table = tables.miners

    def to_domain(self, row: Row[Any]) -> MinerTotals:
        return MinerTotals(
            row.wallet_address,
            row.first_report_time,
            row.last_report_time,
            row.last_hashrate,
            row.total_earned_micro_credits,
            row.report_count,
        )

    async def add(self, totals: MinerTotals) -> None:
        c = self.table.c
        first = literal(totals.first_report_time, c.first_report_time.type)
        last = literal(totals.last_report_time, c.last_report_time.type)
        hashrate = literal(totals.last_hashrate, c.last_hashrate.type)
        newer = c.last_report_time <= last
        await _add_or_insert(
            self,
            (c.wallet_address == totals.wallet_address,),
            {
                "first_report_time": case(
                    (c.first_report_time > first, first), else_=c.first_report_time
                ),
                "last_report_time": case((newer, last), else_=c.last_report_time),
                "last_hashrate": case((newer, hashrate), else_=c.last_hashrate),
                "total_earned_micro_credits": c.total_earned_micro_credits
                + totals.total_earned_micro_credits,
                "report_count": c.report_count + totals.report_count,
            },
            {
                "wallet_address": totals.wallet_address,
                "first_report_time": totals.first_report_time,
                "last_report_time": totals.last_report_time,
                "last_hashrate": totals.last_hashrate,
                "total_earned_micro_credits": totals.total_earned_micro_credits,
                "report_count": totals.report_count,
            },
        )

    async def get(self, wallet_address: str) -> MinerTotals | None:
        return await self.find(wallet_address=wallet_address)

    async def active_since(self, since: datetime) -> int:
        return await self.count(self.table.c.last_report_time >= since)

    async def hashrate_since(self, since: datetime) -> float:
        """Sum of the last hashrates of the miners whose newest report is at least that new."""
        c = self.table.c
        total = select(func.coalesce(func.sum(c.last_hashrate), 0.0)).where(
            c.last_report_time >= since
        )
        return float((await self.execute(total)).scalar_one())


class BlockRepository(BaseRepository[Block]):
    table = tables.blocks

    def to_domain(self, row: Row[Any]) -> Block:
        return Block(
            row.height,
            row.block_hash,
            row.miner_wallet_address,
            row.reward_micro_credits,
            row.block_time,
            row.record_time,
        )

    async def add(self, block: Block) -> Block:
        added = await self.insert_or_ignore(
            {
                "height": block.height,
                "block_hash": block.block_hash,
                "miner_wallet_address": block.miner_wallet_address,
                "reward_micro_credits": block.reward_micro_credits,
                "block_time": block.block_time,
                "record_time": block.record_time,
            }
        )
        if added is None:
            raise BlockAlreadyExists(block.height)
        return added

    async def get(self, height: int) -> Block | None:
        return await self.find(height=height)

    async def highest(self) -> Block | None:
        found = await self.find_many(order_by=[self.table.c.height.desc()], limit=1)
        return found[0] if found else None

    async def found_by(self, miner_wallet_address: str) -> int:
        return await self.count(self.table.c.miner_wallet_address == miner_wallet_address)

    async def listed(self, miner_wallet_address: str | None, request: PageRequest) -> Page[Block]:
        c = self.table.c
        conditions = (
            [] if miner_wallet_address is None else [c.miner_wallet_address == miner_wallet_address]
        )
        return await self.page(
            *conditions, key=[c.height], size=request.size, after=request.after, descending=True
        )


class MiningIdempotency(IdempotencyRepository):
    table = tables.idempotency_keys


async def _add_or_insert(
    repository: BaseRepository[Any],
    match: Sequence[ColumnElement[bool]],
    increments: Mapping[str, Any],
    first_row: Mapping[str, Any],
) -> None:
    """Add to the row, or create it. The second UPDATE is for the race where a concurrent
    transaction inserted the row after our UPDATE found none (PostgreSQL makes our insert wait
    for it, then ignore)."""
    if await repository.update_returning(*match, values=increments):
        return
    if await repository.insert_or_ignore(first_row) is not None:
        return
    if not await repository.update_returning(*match, values=increments):
        raise AssertionError("a row that was just there is gone")


@dataclass(frozen=True)
class MiningRepositories:
    """Every repository of the mining schema, on one unit of work's connection."""

    reports: ReportRepository
    rollups: RollupRepository
    miners: MinerRepository
    blocks: BlockRepository
    idempotency: MiningIdempotency

    @classmethod
    def on(cls, connection: AsyncConnection) -> MiningRepositories:
        return cls(
            reports=ReportRepository(connection),
            rollups=RollupRepository(connection),
            miners=MinerRepository(connection),
            blocks=BlockRepository(connection),
            idempotency=MiningIdempotency(connection),
        )
