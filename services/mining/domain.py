"""Mining: stats reports, per-day rollups, miner totals, blocks, and the rules about days and
windows. No grpc, no sqlalchemy.

Days are UTC calendar days. A history of `days` days ends today (UTC) and has exactly `days`
points, oldest first; a day without reports is a point at zero. Histories are computed from the
per-day rollups only, never from the raw reports, so they cost O(days) and survive pruning.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from services.core.errors import (
    AlreadyExists,
    ErrorDetails,
    FailedPrecondition,
    FieldViolation,
    NotFound,
)

# A miner is active while its newest report is at most this old (MinerStats.active and
# GetNetworkSummary.active_miners, as the proto says).
ACTIVE_WINDOW = timedelta(hours=24)
# The current hashrate is the newest report's only while that report is this fresh; after it,
# a miner that stopped reporting reads 0 rather than a frozen value.
CURRENT_HASHRATE_WINDOW = timedelta(minutes=15)
# Clocks of reporters drift; a report from further ahead is refused.
FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_BATCH_SIZE = 1000
# The highest hashrate a report may carry, in hashes per second (a zettahash: more than whole
# networks reach). Bounded so that no sum of reports (a day's, the network's) ever leaves what a
# double holds: it would take 10^287 reports.
MAX_HASHRATE = 1e21
# The most one miner may earn in all, in micro-credits (as a wallet's credit balance limit): its
# total, each day's sum and every history's sum then fit an int64, however many reports it sends.
EARNINGS_LIMIT = 10**18
MIN_HISTORY_DAYS, MAX_HISTORY_DAYS = 1, 365


@dataclass(frozen=True)
class NewReport:
    """A report as asked for; `observe_time` None means when it is received."""

    wallet_address: str
    hashrate: float
    earned_micro_credits: int
    observe_time: datetime | None
    idempotency_key: str


@dataclass(frozen=True)
class StatsReport:
    """A report as recorded."""

    wallet_address: str
    hashrate: float
    earned_micro_credits: int
    observe_time: datetime
    record_time: datetime


@dataclass(frozen=True)
class DayRollup:
    """Everything one wallet reported during one UTC day, summed."""

    wallet_address: str
    day: date
    report_count: int
    earned_micro_credits: int
    hashrate_sum: float
    hashrate_max: float


@dataclass(frozen=True)
class MinerTotals:
    """What is kept per wallet across all its reports (never pruned)."""

    wallet_address: str
    first_report_time: datetime
    last_report_time: datetime
    last_hashrate: float
    total_earned_micro_credits: int
    report_count: int


@dataclass(frozen=True)
class MinerStats:
    wallet_address: str
    current_hashrate: float
    total_earned_micro_credits: int
    blocks_found: int
    report_count: int
    active: bool
    first_report_time: datetime
    last_report_time: datetime


@dataclass(frozen=True)
class EarningsPoint:
    day: date
    earned_micro_credits: int


@dataclass(frozen=True)
class HashratePoint:
    day: date
    average_hashrate: float
    peak_hashrate: float


@dataclass(frozen=True)
class NewBlock:
    height: int
    block_hash: str
    miner_wallet_address: str
    reward_micro_credits: int
    block_time: datetime
    idempotency_key: str


@dataclass(frozen=True)
class Block:
    height: int
    block_hash: str
    miner_wallet_address: str
    reward_micro_credits: int
    block_time: datetime
    record_time: datetime


@dataclass(frozen=True)
class NetworkSummary:
    active_miners: int
    total_miners: int
    block_height: int
    network_hashrate: float
    latest_block_time: datetime | None


class MinerNotFound(NotFound):
    reason = "MINER_NOT_FOUND"

    def __init__(self, wallet_address: str) -> None:
        super().__init__(f"wallet {wallet_address} never reported mining stats")


class EarningsLimitExceeded(FailedPrecondition):
    reason = "EARNINGS_LIMIT_EXCEEDED"

    def __init__(self, wallet_address: str) -> None:
        super().__init__(
            f"recording these earnings would take wallet {wallet_address} past "
            f"{EARNINGS_LIMIT} micro-credits earned in all",
            details=ErrorDetails(
                metadata={
                    "wallet_address": wallet_address,
                    "limit_micro_credits": str(EARNINGS_LIMIT),
                }
            ),
        )


class BlockAlreadyExists(AlreadyExists):
    reason = "BLOCK_ALREADY_EXISTS"

    def __init__(self, height: int) -> None:
        super().__init__(f"block {height} is already recorded under another idempotency key")


def utc_day(moment: datetime) -> date:
    """The UTC calendar day of a moment (an aware datetime)."""
    return moment.astimezone(UTC).date()


def history_days(today: date, days: int) -> list[date]:
    """The `days` days ending today, oldest first."""
    if not MIN_HISTORY_DAYS <= days <= MAX_HISTORY_DAYS:
        raise ValueError(f"days must be {MIN_HISTORY_DAYS}..{MAX_HISTORY_DAYS}, not {days}")
    return [today - timedelta(days=back) for back in range(days - 1, -1, -1)]


def earnings_points(rollups: Iterable[DayRollup], today: date, days: int) -> list[EarningsPoint]:
    by_day = {rollup.day: rollup for rollup in rollups}
    return [
        EarningsPoint(day, by_day[day].earned_micro_credits if day in by_day else 0)
        for day in history_days(today, days)
    ]


def hashrate_points(rollups: Iterable[DayRollup], today: date, days: int) -> list[HashratePoint]:
    by_day = {rollup.day: rollup for rollup in rollups}
    points = []
    for day in history_days(today, days):
        rollup = by_day.get(day)
        if rollup is None or rollup.report_count == 0:
            points.append(HashratePoint(day, 0.0, 0.0))
        else:
            average = rollup.hashrate_sum / rollup.report_count
            points.append(HashratePoint(day, average, rollup.hashrate_max))
    return points


def current_hashrate(totals: MinerTotals, now: datetime) -> float:
    """The newest report's hashrate while it is fresh, else 0."""
    fresh = totals.last_report_time >= now - CURRENT_HASHRATE_WINDOW
    return totals.last_hashrate if fresh else 0.0


def is_active(last_report_time: datetime, now: datetime) -> bool:
    return last_report_time >= now - ACTIVE_WINDOW


def miner_stats(totals: MinerTotals, blocks_found: int, now: datetime) -> MinerStats:
    return MinerStats(
        wallet_address=totals.wallet_address,
        current_hashrate=current_hashrate(totals, now),
        total_earned_micro_credits=totals.total_earned_micro_credits,
        blocks_found=blocks_found,
        report_count=totals.report_count,
        active=is_active(totals.last_report_time, now),
        first_report_time=totals.first_report_time,
        last_report_time=totals.last_report_time,
    )


def report_violations(report: NewReport, now: datetime, prefix: str = "") -> list[FieldViolation]:
    """What the proto's field rules cannot say: a finite, bounded hashrate, an observe time not
    ahead."""
    violations = []
    if not (math.isfinite(report.hashrate) and 0 <= report.hashrate <= MAX_HASHRATE):
        violations.append(
            FieldViolation(f"{prefix}hashrate", "must be a finite number from 0 to 1e21")
        )
    if report.observe_time is not None and report.observe_time > now + FUTURE_TOLERANCE:
        violations.append(
            FieldViolation(f"{prefix}observe_time", "must be at most 5 minutes in the future")
        )
    return violations


def batch_violations(reports: Sequence[NewReport], now: datetime) -> list[FieldViolation]:
    """Each bad entry named by its index (`requests[3].hashrate`), and keys used twice."""
    if len(reports) > MAX_BATCH_SIZE:
        return [FieldViolation("requests", f"must hold at most {MAX_BATCH_SIZE} entries")]
    violations = []
    first_index: dict[str, int] = {}
    for index, report in enumerate(reports):
        violations.extend(report_violations(report, now, prefix=f"requests[{index}]."))
        earlier = first_index.setdefault(report.idempotency_key, index)
        if earlier != index:
            violations.append(
                FieldViolation(
                    f"requests[{index}].idempotency_key",
                    f"is the same as requests[{earlier}].idempotency_key; each entry needs its own",
                )
            )
    return violations


def is_hex(value: str) -> bool:
    return bool(value) and all(char in "0123456789abcdefABCDEF" for char in value)


def day_rollups(reports: Iterable[StatsReport]) -> list[DayRollup]:
    """The reports summed per (wallet, UTC day), in key order (writers lock rows in one order,
    so two concurrent batches cannot deadlock on each other's rollups)."""
    sums: dict[tuple[str, date], DayRollup] = {}
    for report in reports:
        key = (report.wallet_address, utc_day(report.observe_time))
        seen = sums.get(key)
        if seen is None:
            sums[key] = DayRollup(
                key[0], key[1], 1, report.earned_micro_credits, report.hashrate, report.hashrate
            )
        else:
            sums[key] = DayRollup(
                key[0],
                key[1],
                seen.report_count + 1,
                seen.earned_micro_credits + report.earned_micro_credits,
                seen.hashrate_sum + report.hashrate,
                max(seen.hashrate_max, report.hashrate),
            )
    return [sums[key] for key in sorted(sums)]


def miner_totals(reports: Iterable[StatsReport]) -> list[MinerTotals]:
    """The reports folded per wallet, in wallet order. The newest observe time gives the last
    hashrate; of two reports observed at the same moment, the later recorded wins."""
    folded: dict[str, MinerTotals] = {}
    for report in reports:
        seen = folded.get(report.wallet_address)
        if seen is None:
            folded[report.wallet_address] = MinerTotals(
                report.wallet_address,
                report.observe_time,
                report.observe_time,
                report.hashrate,
                report.earned_micro_credits,
                1,
            )
            continue
        newest = report.observe_time >= seen.last_report_time
        folded[report.wallet_address] = MinerTotals(
            report.wallet_address,
            min(seen.first_report_time, report.observe_time),
            report.observe_time if newest else seen.last_report_time,
            report.hashrate if newest else seen.last_hashrate,
            seen.total_earned_micro_credits + report.earned_micro_credits,
            seen.report_count + 1,
        )
    return [folded[wallet] for wallet in sorted(folded)]
