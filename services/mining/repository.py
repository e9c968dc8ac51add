"""Queries of the mining schema.

Rollups and miner totals are added to with one INSERT ... ON CONFLICT DO UPDATE per batch whose
update adds to the row's own columns: the database decides per row whether it exists, so no
report is lost to a race, no read-then-write happens, and a batch of 1,000 reports costs a
handful of statements rather than thousands. (Hand-written here: the kernel's BaseRepository
has insert_or_ignore but no upsert.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import BindParameter, Row, String, bindparam, case, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.core.idempotency import IdempotencyRepository
from services.core.outbox import OutboxRepository
from services.core.pagination import Page, PageRequest
from services.core.repository import BaseRepository
from services.mining import tables
from services.mining.domain import (
    EARNINGS_LIMIT,
    Block,
    BlockAlreadyExists,
    DayRollup,
    MinerNotFound,
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
        """Every report in one executemany."""
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
        await self.execute_many(insert(self.table), rows)

    async def prune(self, observed_before: datetime, limit: int) -> int:
        """Delete up to `limit` reports observed before the cutoff; returns how many. Bounded,
        so one pass never holds the write lock (or meets the statement timeout) for long."""
        c = self.table.c
        oldest = select(c.id).where(c.observe_time < observed_before).limit(limit)
        return await self.delete_matching(c.id.in_(oldest.scalar_subquery()))


class RollupRepository(BaseRepository[DayRollup]):
    table = tables.day_rollups

    def to_domain(self, row: Row[Any]) -> DayRollup:
        # Positional: a year of rows per history read, and Row's by-name access costs more.
        # The table's columns are in the dataclass's field order.
        return DayRollup(*tuple(row))

    async def add_many(self, rollups: Sequence[DayRollup]) -> None:
        """Add each day's sums to its row, creating the rows that do not exist yet."""
        if not rollups:
            return
        c = self.table.c
        rows = [
            {
                "wallet_address": rollup.wallet_address,
                "day": rollup.day,
                "report_count": rollup.report_count,
                "earned_micro_credits": rollup.earned_micro_credits,
                "hashrate_sum": rollup.hashrate_sum,
                "hashrate_max": rollup.hashrate_max,
            }
            for rollup in rollups
        ]
        statement = self.dialect_insert()
        new = statement.excluded
        await self.execute_many(
            statement.on_conflict_do_update(
                index_elements=[c.wallet_address, c.day],
                set_={
                    "report_count": c.report_count + new.report_count,
                    "earned_micro_credits": c.earned_micro_credits + new.earned_micro_credits,
                    "hashrate_sum": c.hashrate_sum + new.hashrate_sum,
                    "hashrate_max": case(
                        (c.hashrate_max < new.hashrate_max, new.hashrate_max),
                        else_=c.hashrate_max,
                    ),
                },
            ),
            rows,
        )

    async def between(self, wallet_address: str, first: date, last: date) -> list[DayRollup]:
        """The wallet's rollups of these days: at most one row per day, read by primary key."""
        c = self.table.c
        return await self.find_many(
            c.wallet_address == wallet_address, c.day >= first, c.day <= last, order_by=[c.day]
        )


_WALLET: BindParameter[str] = bindparam("wallet", type_=String)
_blocks = tables.blocks
# A miner's totals and how many blocks it found, in one statement (one snapshot, one round trip):
# built once, as building it costs about as much CPU as running it.
_STATS = select(
    tables.miners,
    select(func.count())
    .select_from(_blocks)
    .where(_blocks.c.miner_wallet_address == _WALLET)
    .scalar_subquery()
    .label("blocks_found"),
).where(tables.miners.c.wallet_address == _WALLET)


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

    async def add_many(self, miners: Sequence[MinerTotals]) -> None:
        """Fold each wallet's new reports into its totals, creating the wallets not seen yet.
        The newest observe time gives the last hashrate (reports may arrive out of order)."""
        if not miners:
            return
        c = self.table.c
        rows = [
            {
                "wallet_address": totals.wallet_address,
                "first_report_time": totals.first_report_time,
                "last_report_time": totals.last_report_time,
                "last_hashrate": totals.last_hashrate,
                "total_earned_micro_credits": totals.total_earned_micro_credits,
                "report_count": totals.report_count,
            }
            for totals in miners
        ]
        statement = self.dialect_insert()
        new = statement.excluded
        newer = c.last_report_time <= new.last_report_time
        await self.execute_many(
            statement.on_conflict_do_update(
                index_elements=[c.wallet_address],
                set_={
                    "first_report_time": case(
                        (c.first_report_time > new.first_report_time, new.first_report_time),
                        else_=c.first_report_time,
                    ),
                    "last_report_time": case(
                        (newer, new.last_report_time), else_=c.last_report_time
                    ),
                    "last_hashrate": case((newer, new.last_hashrate), else_=c.last_hashrate),
                    "total_earned_micro_credits": c.total_earned_micro_credits
                    + new.total_earned_micro_credits,
                    "report_count": c.report_count + new.report_count,
                },
            ),
            rows,
        )

    async def first_past_earnings_limit(self, wallet_addresses: Sequence[str]) -> str | None:
        """The first of these wallets whose total earnings pass the limit, if any."""
        c = self.table.c
        statement = (
            select(c.wallet_address)
            .where(
                c.wallet_address.in_(wallet_addresses),
                c.total_earned_micro_credits > EARNINGS_LIMIT,
            )
            .order_by(c.wallet_address)
            .limit(1)
        )
        return (await self.execute(statement)).scalar_one_or_none()

    async def get(self, wallet_address: str) -> MinerTotals:
        totals = await self.find(wallet_address=wallet_address)
        if totals is None:
            raise MinerNotFound(wallet_address)
        return totals

    async def with_blocks_found(self, wallet_address: str) -> tuple[MinerTotals, int] | None:
        """The miner's totals and the number of blocks it found; None for a wallet that never
        reported."""
        row = (await self.execute(_STATS, [{"wallet": wallet_address}])).one_or_none()
        return None if row is None else (self.to_domain(row), row.blocks_found)

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

    async def highest(self) -> Block | None:
        found = await self.find_many(order_by=[self.table.c.height.desc()], limit=1)
        return found[0] if found else None

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


class MiningOutbox(OutboxRepository):
    table = tables.outbox


@dataclass(frozen=True)
class MiningRepositories:
    """Every repository of the mining schema, on one unit of work's connection."""

    reports: ReportRepository
    rollups: RollupRepository
    miners: MinerRepository
    blocks: BlockRepository
    idempotency: MiningIdempotency
    outbox: MiningOutbox

    @classmethod
    def on(cls, connection: AsyncConnection) -> MiningRepositories:
        return cls(
            reports=ReportRepository(connection),
            rollups=RollupRepository(connection),
            miners=MinerRepository(connection),
            blocks=BlockRepository(connection),
            idempotency=MiningIdempotency(connection),
            outbox=MiningOutbox(connection),
        )
