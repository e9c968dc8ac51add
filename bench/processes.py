"""Processes a benchmark starts beside the stack (the no-op server, the baseline under uvicorn):
each logs to a file of its own, and is stopped by its pid when the block ends."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gateway.paths import ROOT

STOP_TIMEOUT_SECONDS = 10.0
# /proc/<pid>/stat counts CPU time in clock ticks.
CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


@contextmanager
def spawned(
    name: str, command: list[str], environment: Mapping[str, str], log_dir: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """Start `command`, its output in `log_dir/<name>.log`; SIGTERM (then SIGKILL) it at the end."""
    log = log_dir / f"{name}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=dict(environment),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process, log
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until(
    ready: Callable[[], bool], process: subprocess.Popen[bytes], log: Path, timeout: float
) -> None:
    """Poll `ready` until it holds; a process that exits or stays unready fails with its log."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            state = f"exited with {process.returncode}" if process.poll() is not None else "unready"
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"{log.stem} {state} after {timeout} s at most:\n{tail}")
        time.sleep(0.1)


def cpu_seconds(stat_line: str) -> float:
    """User plus system CPU time from one /proc/<pid>/stat line."""
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = stat_line.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_SECOND


def _stat(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone already
        return None


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it (uvicorn's workers below its supervisor)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        stat = _stat(int(entry.name)) if entry.name.isdigit() else None
        if stat is not None:
            parents.setdefault(int(stat.rpartition(")")[2].split()[1]), []).append(int(entry.name))
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending.extend(parents.get(current, []))
    return tree


def cpu_now(pids: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds each named process has used so far (0 for one that is gone)."""
    return {name: cpu_seconds(stat) if (stat := _stat(pid)) else 0.0 for name, pid in pids.items()}


def machine_busy_seconds(proc_stat: str) -> float:
    """CPU time all cores spent busy (neither idle nor waiting for I/O), from /proc/stat."""
    # cpu  user nice system idle iowait irq softirq steal ...
    ticks = [int(n) for n in proc_stat.splitlines()[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS_PER_SECOND


def cpu_of_waited_children() -> float:
    """CPU time of the child processes that have ended and been waited for (the load
    generators, which run to their end inside the benchmark)."""
    times = os.times()
    return times.children_user + times.children_system


@dataclass(frozen=True)
class CpuSnapshot:
    """Where the machine's CPU time stood at one moment: the servers measured, the load
    generators, and every core in all."""

    servers: dict[str, float]
    load_generators: float
    machine: float

    @classmethod
    def take(cls, pids: Mapping[str, int]) -> CpuSnapshot:
        return cls(
            cpu_now(pids),
            cpu_of_waited_children(),
            machine_busy_seconds(Path("/proc/stat").read_text()),
        )

    def used_since(self, before: CpuSnapshot) -> tuple[dict[str, float], float]:
        """CPU seconds each server used since `before`, and those used by everything else on
        the machine (neither those servers nor the load generator)."""
        servers = {name: seconds - before.servers[name] for name, seconds in self.servers.items()}
        ours = sum(servers.values()) + self.load_generators - before.load_generators
        return servers, max(0.0, self.machine - before.machine - ours)
