"""`make run`'s warm start and memory, one process and split, side by side in one run.

    python -m bench.makerun [--starts 3]

Starts `python -m runner.run` on free ports with a data folder of its own: once to migrate
(a cold start, not counted), then `--starts` warm starts per topology, each timed from the
fork to the banner (printed once `/healthz` through Envoy says every service serves). At each
banner it reads the memory of every process `make run` started, the runner and the reference
node included: resident (RSS, which counts a library shared by several processes in each of
them) and proportional (PSS, which splits each shared page among its sharers, so the sum is
what the suite takes from the machine). Then SIGTERM, and it checks that no process is left.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.processes import STOP_TIMEOUT_SECONDS, process_tree
from bench.results import RESULTS_DIR, machine, write_results
from gateway.paths import ROOT
from runner.local_stack import LOOPBACK
from runner.run import port_in_use
from services.core.ports import free_port, free_ports
from services.core.registry import SERVICES

BANNER = "R3MES is running"
TOPOLOGIES = ("one-process", "split")
START_TIMEOUT_SECONDS = 90.0
MIB = 1024


def environment(data_dir: Path, topology: str) -> dict[str, str]:
    """Every port `make run` listens on moved to a free one, metrics on a free block."""
    ports = iter(free_ports(len(SERVICES) + 6))
    settings = {
        "R3MES_DATA_DIR": str(data_dir),
        "R3MES_TOPOLOGY": topology,
        **{spec.port_setting: str(next(ports)) for spec in SERVICES},
        "R3MES_GATEWAY_PORT": str(next(ports)),
        "R3MES_FRONTDOOR_PORT": str(next(ports)),
        "R3MES_FRONTDOOR_GRPC_PORT": str(next(ports)),
        "R3MES_REFERENCE_NODE_PORT": str(next(ports)),
        "R3MES_GATEWAY_METRICS_PORT": str(next(ports)),
        "R3MES_METRICS_PORT": str(_free_block(len(SERVICES) + 1)),
    }
    return {**_inherited(), **settings}


def _inherited() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("R3MES_")}


def _free_block(size: int) -> int:
    """The first of `size` consecutive free ports (split gives each process the next one)."""
    while True:
        first = free_port()
        if not any(port_in_use(LOOPBACK, port) for port in range(first, first + size)):
            return first


def memory_of(pid: int) -> tuple[str, int, int]:
    """(command, RSS KiB, PSS KiB) of one process."""
    command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
    fields = dict(line.split(":", 1) for line in rollup)
    return command.strip(), int(fields["Rss"].split()[0]), int(fields["Pss"].split()[0])


def one_start(data_dir: Path, topology: str, log: Path) -> dict[str, Any]:
    started = time.monotonic()
    with log.open("wb") as output:
        runner = subprocess.Popen(
            [sys.executable, "-m", "runner.run"],
            cwd=ROOT,
            env=environment(data_dir, topology),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        while BANNER not in log.read_text(errors="replace"):
            if runner.poll() is not None or time.monotonic() - started > START_TIMEOUT_SECONDS:
                raise RuntimeError(f"make run did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        seconds = time.monotonic() - started
        processes = [memory_of(pid) for pid in process_tree(runner.pid)]
    finally:
        runner.send_signal(signal.SIGTERM)
        runner.wait(timeout=STOP_TIMEOUT_SECONDS)
    left = [pid for pid in process_tree(runner.pid) if pid != runner.pid]
    return {
        "seconds": round(seconds, 2),
        "rss_mib": round(sum(p[1] for p in processes) / MIB),
        "pss_mib": round(sum(p[2] for p in processes) / MIB),
        "processes": [{"command": c[:80], "rss_kib": r, "pss_kib": p} for c, r, p in processes],
        "left_running": left,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=3)
    args = parser.parse_args(argv)
    figures: dict[str, Any] = {"machine": machine(), "topologies": {}}
    with tempfile.TemporaryDirectory(prefix="bench-makerun-") as folder:
        for topology in TOPOLOGIES:
            data_dir = Path(folder) / topology
            one_start(data_dir, topology, Path(folder) / "cold.log")  # migrates
            starts = [
                one_start(data_dir, topology, Path(folder) / f"{topology}-{n}.log")
                for n in range(args.starts)
            ]
            figures["topologies"][topology] = starts
    print(f"{'topology':<12} {'warm starts (s)':<22} {'RSS MiB':>8} {'PSS MiB':>8} left")
    for topology, starts in figures["topologies"].items():
        times = ", ".join(f"{s['seconds']:.1f}" for s in starts)
        rss = statistics.median(s["rss_mib"] for s in starts)
        pss = statistics.median(s["pss_mib"] for s in starts)
        left = sum(len(s["left_running"]) for s in starts)
        print(f"{topology:<12} {times:<22} {rss:>8.0f} {pss:>8.0f} {left}")
    write_results(figures, RESULTS_DIR / "makerun.json")


if __name__ == "__main__":
    main()
