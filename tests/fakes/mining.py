"""The mining service's repositories in memory (services/mining/repository.py): rollups and
totals are folded in as the real upserts add to their rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement

from services.core.idempotency import StoredKey
from services.core.pagination import Page, PageRequest
from services.mining.domain import (
    EARNINGS_LIMIT,
    Block,
    BlockAlreadyExists,
    DayRollup,
    MinerTotals,
    StatsReport,
)
from services.mining.repository import (
    BlockRepository,
    MinerRepository,
    MiningIdempotency,
    MiningOutbox,
    MiningRepositories,
    ReportRepository,
    RollupRepository,
)
from tests.fakes.idempotency import KeysInMemory
from tests.fakes.outbox import OutboxInMemory, OutboxRows
from tests.fakes.uow import FakeUnitOfWork, found_by, keyset_page


@dataclass
class MiningState:
    reports: list[StatsReport] = field(default_factory=list)
    rollups: dict[tuple[str, date], DayRollup] = field(default_factory=dict)
    miners: dict[str, MinerTotals] = field(default_factory=dict)
    blocks: dict[int, Block] = field(default_factory=dict)
    keys: dict[tuple[str, str], StoredKey] = field(default_factory=dict)
    outbox: OutboxRows = field(default_factory=OutboxRows)


class FakeReports(ReportRepository):
    def __init__(self, state: MiningState) -> None:
        self._state = state

    async def add_many(self, reports: Sequence[StatsReport]) -> None:
        self._state.reports.extend(reports)

    async def prune(self, observed_before: datetime, limit: int) -> int:
        old = [r for r in self._state.reports if r.observe_time < observed_before][:limit]
        self._state.reports = [r for r in self._state.reports if r not in old]
        return len(old)


class FakeRollups(RollupRepository):
    def __init__(self, state: MiningState) -> None:
        self._rollups = state.rollups

    async def add_many(self, rollups: Sequence[DayRollup]) -> None:
        for new in rollups:
            seen = self._rollups.get((new.wallet_address, new.day))
            self._rollups[(new.wallet_address, new.day)] = (
                new
                if seen is None
                else replace(
                    seen,
                    report_count=seen.report_count + new.report_count,
                    earned_micro_credits=seen.earned_micro_credits + new.earned_micro_credits,
                    hashrate_sum=seen.hashrate_sum + new.hashrate_sum,
                    hashrate_max=max(seen.hashrate_max, new.hashrate_max),
                )
            )

    async def between(self, wallet_address: str, first: date, last: date) -> list[DayRollup]:
        return sorted(
            (
                rollup
                for (wallet, day), rollup in self._rollups.items()
                if wallet == wallet_address and first <= day <= last
            ),
            key=lambda rollup: rollup.day,
        )


class FakeMiners(MinerRepository):
    def __init__(self, state: MiningState) -> None:
        self._miners = state.miners
        self._blocks = state.blocks

    async def add_many(self, miners: Sequence[MinerTotals]) -> None:
        for new in miners:
            seen = self._miners.get(new.wallet_address)
            if seen is None:
                self._miners[new.wallet_address] = new
                continue
            newer = seen.last_report_time <= new.last_report_time
            self._miners[new.wallet_address] = MinerTotals(
                new.wallet_address,
                min(seen.first_report_time, new.first_report_time),
                new.last_report_time if newer else seen.last_report_time,
                new.last_hashrate if newer else seen.last_hashrate,
                seen.total_earned_micro_credits + new.total_earned_micro_credits,
                seen.report_count + new.report_count,
            )

    async def first_past_earnings_limit(self, wallet_addresses: Sequence[str]) -> str | None:
        past = [
            wallet
            for wallet in wallet_addresses
            if wallet in self._miners
            and self._miners[wallet].total_earned_micro_credits > EARNINGS_LIMIT
        ]
        return min(past, default=None)

    async def find(self, *, for_update: bool = False, **equal_to: Any) -> MinerTotals | None:
        (wallet_address,) = found_by(equal_to, "wallet_address")
        return self._miners.get(wallet_address)

    async def with_blocks_found(self, wallet_address: str) -> tuple[MinerTotals, int] | None:
        totals = self._miners.get(wallet_address)
        if totals is None:
            return None
        found = sum(1 for b in self._blocks.values() if b.miner_wallet_address == wallet_address)
        return totals, found

    async def active_since(self, since: datetime) -> int:
        return sum(1 for miner in self._miners.values() if miner.last_report_time >= since)

    async def hashrate_since(self, since: datetime) -> float:
        return float(
            sum(m.last_hashrate for m in self._miners.values() if m.last_report_time >= since)
        )

    async def count(self, *conditions: ColumnElement[bool]) -> int:
        if conditions:
            raise NotImplementedError("the fake counts every miner, without conditions")
        return len(self._miners)


class FakeBlocks(BlockRepository):
    def __init__(self, state: MiningState) -> None:
        self._blocks = state.blocks

    async def add(self, block: Block) -> Block:
        if block.height in self._blocks:
            raise BlockAlreadyExists(block.height)
        self._blocks[block.height] = block
        return block

    async def find(self, *, for_update: bool = False, **equal_to: Any) -> Block | None:
        (height,) = found_by(equal_to, "height")
        return self._blocks.get(height)

    async def highest(self) -> Block | None:
        return self._blocks[max(self._blocks)] if self._blocks else None

    async def listed(self, miner_wallet_address: str | None, request: PageRequest) -> Page[Block]:
        return keyset_page(
            (
                block
                for block in self._blocks.values()
                if miner_wallet_address in (None, block.miner_wallet_address)
            ),
            lambda block: (block.height,),
            request.size,
            request.after,
        )


class FakeMiningIdempotency(KeysInMemory, MiningIdempotency):
    pass


class FakeMiningOutbox(OutboxInMemory, MiningOutbox):
    pass


def mining_repositories(state: MiningState) -> MiningRepositories:
    return MiningRepositories(
        reports=FakeReports(state),
        rollups=FakeRollups(state),
        miners=FakeMiners(state),
        blocks=FakeBlocks(state),
        idempotency=FakeMiningIdempotency(state.keys),
        outbox=FakeMiningOutbox(state.outbox),
    )


def mining_unit_of_work() -> FakeUnitOfWork[MiningState, MiningRepositories]:
    return FakeUnitOfWork("mining", MiningState(), mining_repositories)
