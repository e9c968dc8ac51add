"""The request path benchmark's figures: the table, the ratios issue 6 sets goals on, and the JSON
written to bench/results/requestpath.json."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from bench.loadgen import Load, LoadResult
from bench.profile import ProfileSummary
from bench.results import machine

LABELS = {
    "noop_rpc_bare": "no-op RPC, bare grpc.aio (h2load)",
    "noop_rpc": "no-op RPC, our stack (h2load)",
    "refused_by_validation": "GetUser refused by validation (h2load)",
    "get_user_grpc": "GetUser direct gRPC (h2load)",
    "get_user_rest_envoy": "GetUser REST via Envoy (wrk)",
    "fastapi_1_worker": "FastAPI baseline, 1 worker (wrk)",
    "fastapi_2_workers": "FastAPI baseline, 2 workers (wrk)",
}
PROFILE_LINES = 12


@dataclass(frozen=True)
class Measured:
    path: str
    engine: str
    result: LoadResult
    cpu_seconds: Mapping[str, float]  # by server process, during the measured load
    # The share of all cores other work (not this benchmark) took meanwhile: 0 on a quiet machine.
    others_cpu_share: float = 0.0
    # Requests/s of every round of this path, when it was measured more than once.
    rounds_rps: tuple[float, ...] = ()

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * sum(self.cpu_seconds.values()) / self.result.requests

    def as_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "engine": self.engine,
            **self.result.summary(),
            "server_cpu_ms_per_request": round(self.cpu_ms_per_request, 3),
            "server_cpu_seconds": {k: round(v, 3) for k, v in self.cpu_seconds.items()},
            "others_cpu_percent": round(100 * self.others_cpu_share, 1),
            "rounds_rps": list(self.rounds_rps or (self.result.rps,)),
        }


def median_rounds(rows: Sequence[Measured]) -> list[Measured]:
    """One row per path and engine, in the order first measured: the round with the median
    requests/s (the lower one of an even count), knowing every round's requests/s."""
    rounds: dict[tuple[str, str], list[Measured]] = {}
    for row in rows:
        rounds.setdefault((row.engine, row.path), []).append(row)
    medians = []
    for measured in rounds.values():
        ordered = sorted(measured, key=lambda row: row.result.rps)
        median = ordered[(len(ordered) - 1) // 2]
        medians.append(replace(median, rounds_rps=tuple(row.result.rps for row in measured)))
    return medians


def ratios(rows: Sequence[Measured], engine: str, workers: int = 1) -> dict[str, float]:
    """The figures issues 6 and 12 set goals on, for one engine (and topology). Each process of
    the suite runs `workers` workers, so the REST path's like-for-like baseline is the app with
    as many; the two-worker app is also given for scale.
    The no-op on our stack pays the whole chain too: the bare no-op shows what the chain costs.

    `_by_cpu` ratios compare the serving processes' CPU per request instead (the throughput
    each path's CPU cost allows): steadier than requests/s when other work shares the cores.
    """
    of_engine = {row.path: row for row in rows if row.engine == engine}
    rps = {path: row.result.rps for path, row in of_engine.items()}
    cpu = {path: row.cpu_ms_per_request for path, row in of_engine.items()}
    rest, refused = "get_user_rest_envoy", "refused_by_validation"
    same = "fastapi_1_worker" if workers == 1 else "fastapi_2_workers"
    return {
        "refused_by_validation_over_noop": round(rps[refused] / rps["noop_rpc"], 3),
        "refused_by_validation_over_noop_by_cpu": round(cpu["noop_rpc"] / cpu[refused], 3),
        "refused_by_validation_over_bare_noop": round(rps[refused] / rps["noop_rpc_bare"], 3),
        "refused_by_validation_over_bare_noop_by_cpu": round(
            cpu["noop_rpc_bare"] / cpu[refused], 3
        ),
        "noop_over_bare_noop": round(rps["noop_rpc"] / rps["noop_rpc_bare"], 3),
        "noop_over_bare_noop_by_cpu": round(cpu["noop_rpc_bare"] / cpu["noop_rpc"], 3),
        "get_user_grpc_rps": rps["get_user_grpc"],
        "rest_via_envoy_over_fastapi_same_workers": round(rps[rest] / rps[same], 3),
        "rest_via_envoy_over_fastapi_same_workers_by_cpu": round(cpu[same] / cpu[rest], 3),
        "rest_via_envoy_over_fastapi_2_workers": round(rps[rest] / rps["fastapi_2_workers"], 3),
    }


def _version(command: list[str]) -> str:
    if shutil.which(command[0]) is None:
        return "missing"
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = (done.stdout + done.stderr).splitlines()
    return lines[0].strip() if lines else "unknown"


def report(
    rows: Sequence[Measured],
    load: Load,
    seconds: int,
    rounds: int,
    profiles: Mapping[str, Mapping[str, ProfileSummary]],
    workers: int = 1,
) -> dict[str, Any]:
    engines = list(dict.fromkeys(row.engine for row in rows))
    return {
        "benchmark": "requestpath",
        "in_flight": load.in_flight,
        "h2load_connections": load.connections,
        "h2load_streams_per_connection": load.streams_per_connection,
        "seconds_per_path": seconds,
        "rounds": rounds,
        "workers": workers,
        "machine": machine(),
        "tools": {"h2load": _version(["h2load", "--version"]), "wrk": _version(["wrk", "-v"])},
        "results": [row.as_json() for row in rows],
        "ratios": {engine: ratios(rows, engine, workers) for engine in engines},
        "profiles": {
            engine: {path: summary.as_json() for path, summary in by_path.items()}
            for engine, by_path in profiles.items()
            if by_path
        },
    }


def print_report(figures: dict[str, Any]) -> None:
    print(
        f"request path, {figures['in_flight']} in flight, {figures['seconds_per_path']} s each, "
        f"median of {figures['rounds']} round(s), load average {figures['machine']['load_average']}"
    )
    print(
        f"{'path':<40}{'engine':<16}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
        f"{'CPU ms/req':>12}{'others %':>10}"
    )
    for row in figures["results"]:
        print(
            f"{LABELS[row['path']]:<40}{row['engine']:<16}{row['rps']:>9.0f}{row['p50_ms']:>9.2f}"
            f"{row['p99_ms']:>9.2f}{row['errors']:>8}{row['server_cpu_ms_per_request']:>12.2f}"
            f"{row['others_cpu_percent']:>10.0f}"
        )
    print(
        "CPU ms/req: the serving processes' CPU per answered request; others %: the share of "
        "all cores that work outside this benchmark took meanwhile"
    )
    for engine, values in figures["ratios"].items():
        print(f"ratios on {engine}:")
        for name, value in values.items():
            print(f"  {name}: {value}")
    for engine, by_path in figures["profiles"].items():
        for path, summary in by_path.items():
            print(f"users holding the GIL, {path} on {engine} ({summary['samples']} samples):")
            for title, key in (
                ("by subsystem", "by_subsystem"),
                ("by package", "self_by_package"),
                ("by function", "self"),
            ):
                print(f"  {title}:")
                for frame, percent in summary[key][:PROFILE_LINES]:
                    print(f"  {percent:5.1f} %  {frame}")
