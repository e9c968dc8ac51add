"""The credits service's cost: reserve + confirm pairs through the real service beside two raw
asyncpg loops on the same table shape, in one run, on PostgreSQL.

    python -m bench.credits [--seconds 3] [--wallets 500] [--postgres-url URL]

Scenarios: one hot wallet (every pair contends for one row) and many wallets (pairs spread over
`--wallets` rows), each at 1, 8 and 32 pairs in flight. A service pair is ReserveCredits then
ConfirmReservation over gRPC with the internal token (each its own unit of work: idempotency
record, hold, ledger entry, balance). A raw pair is the two bare statements a hold and a capture
need at the least, each its own autocommit transaction on an asyncpg pool of the same size:
`UPDATE ... SET available = available - $1, reserved = reserved + $1 WHERE ... AND available >=
$1` and `UPDATE ... SET reserved = reserved - $1 WHERE ... AND reserved >= $1`. A "same rows"
pair writes what the service must (the fair baseline): each operation one transaction, with
statements as a plain asyncpg program would send them, on tables made by the service's own
migrations: the idempotency claim, the reservation (inserted, then resolved), the conditional
account update, the ledger entry of the capture, the stored reply.

The load comes from a Python asyncio client, not h2load: the raw loop is driven by the same
client in the same process, so the ratio compares the service against the database alone with
the client's own cost on both sides. The sides take turns in slices of half a second until
each has had `--seconds`, so work of others on a shared machine falls on all of them alike. The
service's CPU per pair (its process's user + system time while its slices ran) is the steadier
figure on a busy machine. The service runs as its own process (`python -m
services.credits`); clients, service and PostgreSQL share this machine's cores, so the figures
are for comparison within a run, not capacity. At the end the ledger is checked: no account may
be negative or differ from the sum of its ledger (an overdraft or a lost/duplicated change).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import grpc
from r3mes.credits.v1 import credits_pb2, credits_pb2_grpc

from bench.loadgen import LoadResult, percentile
from bench.processes import cpu_now
from bench.profile import ProfileSummary, finish_recording, start_recording
from bench.results import RESULTS_DIR, machine, write_results
from services.core.db import Database
from services.core.migrate import upgrade
from services.core.ports import free_port
from services.core.settings import Settings
from services.core.testing import new_wallet_address, until_serving

RESULTS = RESULTS_DIR / "credits.json"
Call = Callable[[], Awaitable[None]]
POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
IN_FLIGHT = (1, 8, 32)
WARM_UP_SECONDS = 0.5
SLICE_SECONDS = 0.5
POOL_SIZE = 10  # the service's default db_pool_size; the raw loop gets the same
FUNDS = 10**15  # per wallet: far more than any run can spend, one micro-credit per pair
PROFILE_SECONDS = 5
PROFILE_IN_FLIGHT = 8
_keys = itertools.count()


async def start_service(settings: Settings, port: int, token: str, log: Path) -> Any:
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("R3MES_")},
        "R3MES_DATABASE_URL": settings.database_url or "",
        "R3MES_SCHEMA_SUFFIX": settings.schema_suffix,
        "R3MES_CREDITS_PORT": str(port),
        "R3MES_INTERNAL_TOKEN": token,
        "R3MES_LOG_LEVEL": "WARNING",
        "R3MES_DB_POOL_SIZE": str(POOL_SIZE),
    }
    with log.open("ab") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.credits", env=environment, stdout=output, stderr=output
        )
    if await until_serving(f"127.0.0.1:{port}", 30, lambda: process.returncode is None):
        return process
    process.kill()
    raise SystemExit(f"credits did not start; its output is in {log}")


def service_pair(
    stub: credits_pb2_grpc.CreditsServiceAsyncStub, wallets: list[str], token: str
) -> Call:
    metadata = (("x-r3mes-internal-token", token),)
    turn = itertools.cycle(wallets)

    async def call() -> None:
        key = f"bench-{next(_keys)}"
        held = await stub.ReserveCredits(
            credits_pb2.ReserveCreditsRequest(
                wallet_address=next(turn), amount_micro_credits=1, idempotency_key=key
            ),
            metadata=metadata,
            timeout=10,
        )
        await stub.ConfirmReservation(
            credits_pb2.ConfirmReservationRequest(
                reservation_id=held.reservation.reservation_id, idempotency_key=key
            ),
            metadata=metadata,
            timeout=10,
        )

    return call


RAW_TABLE = """CREATE TABLE {schema}.accounts (
    wallet_address varchar(90) PRIMARY KEY,
    available bigint NOT NULL CHECK (available >= 0),
    reserved bigint NOT NULL CHECK (reserved >= 0),
    update_time timestamptz NOT NULL)"""
RAW_HOLD = """UPDATE {schema}.accounts SET available = available - $1, reserved = reserved + $1,
    update_time = now() WHERE wallet_address = $2 AND available >= $1 RETURNING available"""
RAW_CAPTURE = """UPDATE {schema}.accounts SET reserved = reserved - $1, update_time = now()
    WHERE wallet_address = $2 AND reserved >= $1 RETURNING reserved"""


RAW_FUND = "INSERT INTO {schema}.accounts VALUES ($1, $2, 0, now())"
AUDIT_ACCOUNTS = """SELECT count(*) FROM {schema}.accounts a
    LEFT JOIN (SELECT wallet_address, sum(delta) AS total FROM {schema}.ledger_entries
               GROUP BY wallet_address) l USING (wallet_address)
    WHERE a.available < 0 OR a.reserved < 0 OR a.available + a.reserved <> coalesce(l.total, 0)"""
AUDIT_HOLDS = "SELECT count(*) FROM {schema}.reservations WHERE state = 'HELD'"

# The same rows per operation as the service writes, one transaction each (the fair baseline).
ROWS_CLAIM = """INSERT INTO {schema}.idempotency_keys
    (scope, key, fingerprint, response, create_time) VALUES ($1, $2, 'f', NULL, now())
    ON CONFLICT DO NOTHING"""
ROWS_REPLY = "UPDATE {schema}.idempotency_keys SET response = $3 WHERE scope = $1 AND key = $2"
ROWS_HOLD = """INSERT INTO {schema}.reservations (reservation_id, wallet_address, amount, captured,
    state, description, create_time, expire_time) VALUES ($1, $2, $3, 0, 'HELD', '', now(),
    now() + interval '5 minutes')"""
ROWS_RESOLVE = """UPDATE {schema}.reservations SET state = 'CONFIRMED', captured = amount,
    close_time = now() WHERE reservation_id = $1 AND state = 'HELD' AND expire_time > now()
    RETURNING wallet_address, amount"""
ROWS_RELEASE = """UPDATE {schema}.accounts SET reserved = reserved - $2, update_time = now()
    WHERE wallet_address = $1 AND reserved >= $2 RETURNING available + reserved"""
ROWS_ENTRY = """INSERT INTO {schema}.ledger_entries (entry_id, wallet_address, kind, delta,
    balance_after, reservation_id, description, create_time)
    VALUES ($1, $2, 'CAPTURE', -$3::bigint, $4, $5, '', now())"""


def raw_pair(pool: Any, schema: str, wallets: list[str]) -> Call:
    hold, capture = RAW_HOLD.format(schema=schema), RAW_CAPTURE.format(schema=schema)
    turn = itertools.cycle(wallets)

    async def call() -> None:
        wallet = next(turn)
        async with pool.acquire() as connection:
            if await connection.fetchval(hold, 1, wallet) is None:
                raise RuntimeError("raw hold refused")
        async with pool.acquire() as connection:
            if await connection.fetchval(capture, 1, wallet) is None:
                raise RuntimeError("raw capture refused")

    return call


def rows_pair(pool: Any, schema: str, wallets: list[str]) -> Call:
    """Reserve then confirm as a plain asyncpg program writing the service's rows would: one
    transaction per operation, a statement per row."""
    claim, reply = ROWS_CLAIM.format(schema=schema), ROWS_REPLY.format(schema=schema)
    hold, account = ROWS_HOLD.format(schema=schema), RAW_HOLD.format(schema=schema)
    resolve, release = ROWS_RESOLVE.format(schema=schema), ROWS_RELEASE.format(schema=schema)
    entry = ROWS_ENTRY.format(schema=schema)
    turn = itertools.cycle(wallets)

    async def call() -> None:
        wallet, key, reservation = next(turn), f"rows-{next(_keys)}", secrets.token_urlsafe(24)
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute(claim, "ReserveCredits", key)
            await connection.execute(hold, reservation, wallet, 1)
            if await connection.fetchval(account, 1, wallet) is None:
                raise RuntimeError("raw hold refused")
            await connection.execute(reply, "ReserveCredits", key, reservation)
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute(claim, "ConfirmReservation", key)
            resolved = await connection.fetchrow(resolve, reservation)
            total = await connection.fetchval(release, wallet, resolved["amount"])
            await connection.execute(
                entry, secrets.token_urlsafe(24), wallet, 1, total, reservation
            )
            await connection.execute(reply, "ConfirmReservation", key, reservation)

    return call


@dataclass
class Tally:
    """What the slices of one side's load added up to."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0
    cpu_seconds: float = 0.0  # of the service process, while this side ran

    def result(self) -> LoadResult:
        ordered = sorted(self.latencies)
        if not ordered:
            # Every call failed: the raw loops count their exceptions as errors, never figures.
            raise RuntimeError(f"no pair succeeded ({self.errors} failed)")
        return LoadResult(
            requests=len(ordered),
            errors=self.errors,
            rps=round(len(ordered) / self.elapsed, 1),
            p50_ms=round(percentile(ordered, 0.50) * 1000, 3),
            p99_ms=round(percentile(ordered, 0.99) * 1000, 3),
        )


async def closed_loop(call: Call, in_flight: int, seconds: float, tally: Tally) -> None:
    """`in_flight` workers each repeat `call` until `seconds` have passed; the latency of every
    call goes to `tally`. Hand-written and in Python on purpose (see the module docstring):
    h2load cannot chain a confirm to the reserve it depends on, and the raw loops must share the
    client."""
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                await call()
            except Exception:
                tally.errors += 1
                continue
            tally.latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    tally.elapsed += time.perf_counter() - began


async def side_by_side(
    calls: Mapping[str, Call], in_flight: int, seconds: float, service_pid: int
) -> dict[str, Tally]:
    """Every side in turn, in slices of SLICE_SECONDS until each had `seconds`: work of others
    on a shared machine then falls on all sides alike, not on whichever ran while it peaked."""
    tallies = {side: Tally() for side in calls}
    for call in calls.values():
        await closed_loop(call, in_flight, WARM_UP_SECONDS, Tally())
    for _ in range(max(1, round(seconds / SLICE_SECONDS))):
        for side, call in calls.items():
            before = cpu_now({"credits": service_pid})["credits"]
            await closed_loop(call, in_flight, SLICE_SECONDS, tallies[side])
            tallies[side].cpu_seconds += cpu_now({"credits": service_pid})["credits"] - before
    return tallies


async def profiled(call: Call, pid: int, out: Path) -> ProfileSummary:
    """The service's CPU by function while pairs run, in a load of its own (sampling never
    skews the table)."""
    recording = start_recording(pid, PROFILE_SECONDS, out)
    await closed_loop(call, PROFILE_IN_FLIGHT, PROFILE_SECONDS + 1, Tally())
    return await asyncio.to_thread(finish_recording, recording, out)


# Schema names below are ours (a fixed prefix and random hex), never input: S608 does not apply.
async def audit(dsn: str, schema: str) -> dict[str, int]:
    """Accounts that are negative or disagree with their ledger: each one an overdraft or a
    lost or duplicated change."""
    connection = await asyncpg.connect(dsn)
    try:
        wrong = await connection.fetchval(AUDIT_ACCOUNTS.format(schema=schema))
        held = await connection.fetchval(AUDIT_HOLDS.format(schema=schema))
    finally:
        await connection.close()
    return {"accounts_wrong": int(wrong), "holds_left_open": int(held)}


async def run(
    postgres_url: str,
    seconds: float,
    wallet_count: int,
    work_dir: Path,
    profile_dir: Path | None = None,
) -> dict[str, Any]:
    suffix = f"_bench{secrets.token_hex(4)}"
    settings = Settings(database_url=postgres_url, schema_suffix=suffix)
    rows_settings = Settings(database_url=postgres_url, schema_suffix=f"_rows{suffix}")
    schema, raw_schema = f"credits{suffix}", f"credits_raw{suffix}"
    rows_schema = f"credits_rows{suffix}"
    dsn = postgres_url.replace("postgresql+asyncpg://", "postgresql://")
    token = secrets.token_urlsafe(16)
    for migrated in (settings, rows_settings):
        database = Database.from_settings(migrated, "credits")
        await upgrade(database, "credits")
        await database.dispose()
    admin = await asyncpg.connect(dsn)
    await admin.execute(f"CREATE SCHEMA {raw_schema}")
    await admin.execute(RAW_TABLE.format(schema=raw_schema))
    port = free_port()
    process = await start_service(settings, port, token, work_dir / "credits.log")
    pool = await asyncpg.create_pool(dsn, min_size=POOL_SIZE, max_size=POOL_SIZE)
    results: dict[str, dict[str, LoadResult]] = {}
    cpu_ms: dict[str, float] = {}  # the service process's CPU per answered pair
    profile: ProfileSummary | None = None
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = credits_pb2_grpc.CreditsServiceStub(channel)
            scenarios = {"hot_wallet": 1, "many_wallets": wallet_count}
            for scenario, count in scenarios.items():
                wallets = [new_wallet_address() for _ in range(count)]
                await grant_all(stub, wallets, token)
                for funded in (raw_schema, rows_schema):
                    await admin.executemany(
                        RAW_FUND.format(schema=funded), [(wallet, FUNDS) for wallet in wallets]
                    )
                for in_flight in IN_FLIGHT:
                    name = f"{scenario}_x{in_flight}"
                    calls = {
                        "service": service_pair(stub, wallets, token),
                        "raw": raw_pair(pool, raw_schema, wallets),
                        "raw_same_rows": rows_pair(pool, rows_schema, wallets),
                    }
                    tallies = await side_by_side(calls, in_flight, seconds, process.pid)
                    results[name] = {side: tally.result() for side, tally in tallies.items()}
                    service = tallies["service"]
                    cpu_ms[name] = round(1000 * service.cpu_seconds / len(service.latencies), 3)
                    print_row(name, results[name], cpu_ms[name])
            if profile_dir is not None:
                out = profile_dir / "credits-reserve-confirm.txt"
                profile = await profiled(service_pair(stub, wallets, token), process.pid, out)
        audited = await audit(dsn, schema)
    finally:
        await pool.close()
        process.send_signal(signal.SIGTERM)
        await process.wait()
        for name in (schema, raw_schema, rows_schema):
            await admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        await admin.close()
    return report(results, cpu_ms, audited, seconds, wallet_count, profile)


async def grant_all(
    stub: credits_pb2_grpc.CreditsServiceAsyncStub, wallets: list[str], token: str
) -> None:
    metadata = (("x-r3mes-internal-token", token),)
    for start in range(0, len(wallets), 32):
        await asyncio.gather(
            *(
                stub.GrantCredits(
                    credits_pb2.GrantCreditsRequest(
                        wallet_address=wallet,
                        amount_micro_credits=FUNDS,
                        idempotency_key=f"fund-{wallet}",
                    ),
                    metadata=metadata,
                    timeout=30,
                )
                for wallet in wallets[start : start + 32]
            )
        )


def _ratio(service: LoadResult, raw: LoadResult) -> float | None:
    return round(service.rps / raw.rps, 3) if raw.rps else None


def print_row(name: str, pair: dict[str, LoadResult], cpu_ms: float) -> None:
    service, raw, rows = pair["service"], pair["raw"], pair["raw_same_rows"]
    print(
        f"{name:<18} service {service.rps:>7.1f} pairs/s p50 {service.p50_ms:>6.2f} ms"
        f" CPU {cpu_ms:>5.2f} ms err {service.errors:<3}"
        f"| two UPDATEs {raw.rps:>7.1f} p50 {raw.p50_ms:>5.2f}"
        f" | same rows {rows.rps:>7.1f} p50 {rows.p50_ms:>5.2f}"
        f" | ratios {_ratio(service, raw)} {_ratio(service, rows)}",
        flush=True,
    )


def report(
    results: dict[str, dict[str, LoadResult]],
    cpu_ms: dict[str, float],
    audited: dict[str, int],
    seconds: float,
    wallet_count: int,
    profile: ProfileSummary | None = None,
) -> dict[str, Any]:
    return {
        "benchmark": "credits",
        "pair": "Reserve + Confirm of 1 micro-credit; raw: two conditional UPDATEs; raw_same_rows:"
        " the service's rows, one transaction per operation",
        "seconds_per_measurement": seconds,
        "many_wallets": wallet_count,
        "machine": machine(),
        "results": {
            name: {side: m.summary() for side, m in pair.items()} for name, pair in results.items()
        },
        "service_cpu_ms_per_pair": cpu_ms,
        "ratios_service_over_raw": {
            name: _ratio(pair["service"], pair["raw"]) for name, pair in results.items()
        },
        "ratios_service_over_raw_same_rows": {
            name: _ratio(pair["service"], pair["raw_same_rows"]) for name, pair in results.items()
        },
        "audit": audited,
        "profile": None if profile is None else profile.as_json(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="measured time per side, in slices of 0.5 s"
    )
    parser.add_argument("--wallets", type=int, default=500, help="wallets of the spread case")
    parser.add_argument("--postgres-url", default=POSTGRES_URL, help="SQLAlchemy URL")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--profile", type=Path, help="also sample the service with py-spy (many wallets), into DIR"
    )
    args = parser.parse_args(argv)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="r3mes-bench-credits-") as work_dir:
        figures = asyncio.run(
            run(args.postgres_url, args.seconds, args.wallets, Path(work_dir), args.profile)
        )
    for name, ratio in figures["ratios_service_over_raw"].items():
        same_rows = figures["ratios_service_over_raw_same_rows"][name]
        print(f"{name}: service/two UPDATEs = {ratio}, service/same rows = {same_rows}")
    print(f"audit: {figures['audit']}")
    if figures["profile"] is not None:
        print(f"credits holding the GIL ({figures['profile']['samples']} samples), by package:")
        for frame, percent in figures["profile"]["self_by_package"][:12]:
            print(f"  {percent:5.1f} %  {frame}")
        print("by function:")
        for frame, percent in figures["profile"]["self"][:12]:
            print(f"  {percent:5.1f} %  {frame}")
    write_results(figures, args.out)


if __name__ == "__main__":
    main()
