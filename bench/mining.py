"""Histories stay fast at a year of data: GetHashrateHistory over 7 and 365 days, before and
after the raw reports grow tenfold, side by side in one run.

    python -m bench.mining [--scale 1.0] [--calls 300] [--database-url URL]

Loads one year of reports for one wallet (per minute at --scale 1: 525,600 reports) plus one
report per day for a year for each of 100 other wallets, all through BatchRecordMiningStats
(1,000 per call; the load rate is printed), then times GetHashrateHistory(days=7) and
(days=365) over gRPC, one call at a time. Then it multiplies the raw reports by ten with
INSERT ... SELECT straight into the reports table (not through the RPC: the point is only that
reads never scan raw reports, and the RPC path was measured by the load) and times the same
calls again. Histories are computed from per-day rollups, so both ratios (365-day / 7-day and
after / before growth) should stay near 1. The default (--scale 1) is the full per-minute
year, about two minutes of CPU on SQLite (longer in wall time on busy cores); `--scale 0.25`
reports every 4 minutes instead, still over a whole year.

The service runs in this process on SQLite (or on --database-url), client and server sharing
one event loop and this machine's cores: the figures compare within a run, not capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from pydantic import SecretStr
from r3mes.mining.v1 import mining_pb2, mining_pb2_grpc
from sqlalchemy import func, insert, select

from bench.loadgen import percentile
from services.core.db import Database
from services.core.settings import Settings
from services.core.testing import new_wallet_address
from services.mining import tables
from services.mining.server import create_server

RESULTS = Path(__file__).resolve().parent / "results" / "mining.json"
BATCH = 1000
OTHER_WALLETS = 100
GROWTH = 10
MINUTES_PER_YEAR = 365 * 24 * 60


def year_of_reports(
    wallet: str, now: datetime, scale: float
) -> list[mining_pb2.RecordMiningStatsRequest]:
    step = timedelta(minutes=1 / scale)
    count = int(MINUTES_PER_YEAR * scale)
    start = now - step * count
    reports = []
    for index in range(count):
        request = mining_pb2.RecordMiningStatsRequest(
            wallet_address=wallet,
            hashrate=1_000.0 + index % 97,
            earned_micro_credits=10 + index % 7,
            idempotency_key=f"bench-{wallet[-8:]}-{index}",
        )
        request.observe_time.FromDatetime(start + step * (index + 1))
        reports.append(request)
    return reports


def daily_reports(wallets: list[str], now: datetime) -> list[mining_pb2.RecordMiningStatsRequest]:
    reports = []
    for wallet in wallets:
        for day in range(365):
            request = mining_pb2.RecordMiningStatsRequest(
                wallet_address=wallet,
                hashrate=50.0 + day,
                earned_micro_credits=100,
                idempotency_key=f"daily-{wallet[-8:]}-{day}",
            )
            request.observe_time.FromDatetime(now - timedelta(days=day, minutes=1))
            reports.append(request)
    return reports


async def load(
    stub: mining_pb2_grpc.MiningServiceAsyncStub,
    reports: list[mining_pb2.RecordMiningStatsRequest],
    metadata: tuple[tuple[str, str], ...],
) -> float:
    """Record every report in batches of 1,000; returns reports per second."""
    started = time.perf_counter()
    for first in range(0, len(reports), BATCH):
        request = mining_pb2.BatchRecordMiningStatsRequest(requests=reports[first : first + BATCH])
        await stub.BatchRecordMiningStats(request, metadata=metadata, timeout=120)
    return len(reports) / (time.perf_counter() - started)


@dataclass
class Timing:
    """Latency of each call, and the CPU this process (client, server and the SQLite thread)
    spent per call: steadier than wall time on cores that other work shares."""

    latencies_ms: list[float]
    cpu_ms_per_call: float

    def percentile_ms(self, fraction: float) -> float:
        return percentile(sorted(self.latencies_ms), fraction)

    def summary(self) -> dict[str, float | int]:
        return {
            "requests": len(self.latencies_ms),
            "p50_ms": round(self.percentile_ms(0.5), 3),
            "p99_ms": round(self.percentile_ms(0.99), 3),
            "cpu_ms_per_call": round(self.cpu_ms_per_call, 3),
        }


async def time_history(
    stub: mining_pb2_grpc.MiningServiceAsyncStub, wallet: str, days: int, calls: int
) -> Timing:
    request = mining_pb2.GetHashrateHistoryRequest(wallet_address=wallet, days=days)

    async def call() -> None:
        response = await stub.GetHashrateHistory(request, timeout=10)
        assert len(response.points) == days

    for _ in range(20):  # warm up caches and the connection
        await call()
    latencies_ms: list[float] = []
    cpu_started = time.process_time()
    for _ in range(calls):
        began = time.perf_counter()
        await call()
        latencies_ms.append((time.perf_counter() - began) * 1000)
    return Timing(latencies_ms, (time.process_time() - cpu_started) * 1000 / calls)


async def raw_reports(database: Database) -> int:
    async with database.transaction(read_only=True) as connection:
        count = select(func.count()).select_from(tables.reports)
        return int((await connection.execute(count)).scalar_one())


async def grow(database: Database, factor: int) -> int:
    """Copy every raw report factor - 1 times, directly in the table; returns the new count."""
    c = tables.reports.c
    columns = [c.wallet_address, c.hashrate, c.earned_micro_credits, c.observe_time, c.record_time]
    async with database.transaction() as connection:
        last_original = (await connection.execute(select(func.max(c.id)))).scalar_one()
        for _ in range(factor - 1):
            copy = insert(tables.reports).from_select(
                [column.name for column in columns],
                select(*columns).where(c.id <= last_original),
            )
            await connection.execute(copy)
    return await raw_reports(database)


async def run(settings: Settings, scale: float, calls: int) -> dict[str, Any]:
    metadata = (("x-r3mes-internal-token", settings.internal_token_value() or ""),)
    now = datetime.now(UTC)
    wallet = new_wallet_address()
    others = [new_wallet_address() for _ in range(OTHER_WALLETS)]
    server, port = await create_server(settings)
    await server.start()
    database = Database.from_settings(settings, "mining")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = mining_pb2_grpc.MiningServiceStub(channel)
            main_reports = year_of_reports(wallet, now, scale)
            print(f"loading {len(main_reports):,} reports of one wallet ...", flush=True)
            main_rate = await load(stub, main_reports, metadata)
            print(f"  {main_rate:,.0f} reports/s", flush=True)
            other_reports = daily_reports(others, now)
            print(f"loading {len(other_reports):,} reports of {OTHER_WALLETS} wallets ...")
            other_rate = await load(stub, other_reports, metadata)
            print(f"  {other_rate:,.0f} reports/s", flush=True)
            before_count = await raw_reports(database)
            before = {days: await time_history(stub, wallet, days, calls) for days in (7, 365)}
            print(f"growing raw reports {GROWTH}x in the table ...", flush=True)
            after_count = await grow(database, GROWTH)
            after = {days: await time_history(stub, wallet, days, calls) for days in (7, 365)}
    finally:
        await database.dispose()
        await server.stop(grace_seconds=1.0)
    return figures(scale, calls, main_rate, other_rate, before_count, after_count, before, after)


def figures(
    scale: float,
    calls: int,
    main_rate: float,
    other_rate: float,
    before_count: int,
    after_count: int,
    before: dict[int, Timing],
    after: dict[int, Timing],
) -> dict[str, Any]:
    def p50(timing: Timing) -> float:
        return timing.percentile_ms(0.5)

    def cpu(timing: Timing) -> float:
        return timing.cpu_ms_per_call

    return {
        "benchmark": "mining",
        "call": "MiningService.GetHashrateHistory of a wallet with a year of reports",
        "scale": scale,
        "calls_per_measurement": calls,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_reports_per_second": {
            "one_wallet_year": round(main_rate, 1),
            "other_wallets_daily": round(other_rate, 1),
        },
        "raw_reports": {"before_growth": before_count, "after_growth": after_count},
        "results": {
            "before_growth": {f"days_{d}": m.summary() for d, m in before.items()},
            "after_growth": {f"days_{d}": m.summary() for d, m in after.items()},
        },
        "ratios": {
            "p50_365_over_7_before_growth": round(p50(before[365]) / p50(before[7]), 3),
            "p50_365_over_7_after_growth": round(p50(after[365]) / p50(after[7]), 3),
            "p50_after_over_before_growth_days_7": round(p50(after[7]) / p50(before[7]), 3),
            "p50_after_over_before_growth_days_365": round(p50(after[365]) / p50(before[365]), 3),
            "cpu_365_over_7_before_growth": round(cpu(before[365]) / cpu(before[7]), 3),
            "cpu_365_over_7_after_growth": round(cpu(after[365]) / cpu(after[7]), 3),
            "cpu_after_over_before_growth_days_7": round(cpu(after[7]) / cpu(before[7]), 3),
            "cpu_after_over_before_growth_days_365": round(cpu(after[365]) / cpu(before[365]), 3),
        },
    }


def print_report(result: dict[str, Any]) -> None:
    counts = result["raw_reports"]
    print(f"raw reports: {counts['before_growth']:,} before, {counts['after_growth']:,} after")
    print(f"{'measurement':<28}{'calls':>8}{'p50 ms':>10}{'p99 ms':>10}{'cpu ms/call':>12}")
    for phase, rows in result["results"].items():
        for name, row in rows.items():
            label = f"{phase} {name}"
            print(
                f"{label:<28}{row['requests']:>8}{row['p50_ms']:>10.3f}{row['p99_ms']:>10.3f}"
                f"{row['cpu_ms_per_call']:>12.3f}"
            )
    for name, value in result["ratios"].items():
        print(f"{name}: {value}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--scale", type=float, default=1.0, help="reports per minute (1: a year per minute)"
    )
    parser.add_argument("--calls", type=int, default=300, help="timed calls per measurement")
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL (default: SQLite)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not 0 < args.scale <= 1:
        parser.error("--scale must be in (0, 1]")
    # Nothing of the loaded year is pruned while the bench runs (mining's own setting).
    os.environ["R3MES_MINING_REPORT_RETENTION_DAYS"] = "400"
    with tempfile.TemporaryDirectory(prefix="r3mes-bench-mining-") as work_dir:
        settings = Settings(
            data_dir=Path(work_dir),
            internal_token=SecretStr(secrets.token_urlsafe(16)),
            database_url=args.database_url,
            schema_suffix=f"_bench{secrets.token_hex(4)}" if args.database_url else "",
            migrate_on_start=True,
            log_level="WARNING",
            # Every timed read comes from one address: the limiter would refuse all but 30.
            ratelimit_backend="off",
        )
        result = asyncio.run(run(settings, args.scale, args.calls))
    print_report(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
