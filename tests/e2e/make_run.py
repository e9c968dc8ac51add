"""`make run` as its README starts it (`python -m runner.run`, the recipe of `make run`) on its
own defaults, with only free ports and a data folder of its own chosen, and what its banner
tells a reader: where the gateway, the console, the one gRPC port and each metrics port are.
The tests of `make run` itself, of its flows, of Prometheus scraping it and of its console in a
browser all start it through here."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.processes import process_tree
from gateway.paths import ROOT
from runner.local_stack import StackPorts
from services.core.auth import INTERNAL_TOKEN_HEADER
from services.core.ports import free_port

READY_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 30.0
BANNER = "R3MES is running"
# The banner's lines (each prefixed `run | ` by the runner's output).
_START_HERE = re.compile(r"Start here:\s+(http://\S+?)/\s")
_CONSOLE = re.compile(r"Console:\s+(http://\S+?)/\s")
_GRPC = re.compile(r"gRPC per service on ([\w.]+): (\d+) \(every service, one process\)")
_METRICS = re.compile(r"Prometheus metrics: (.+)$", re.MULTILINE)
_METRICS_PORT = re.compile(r"(\w+) http://([\w.]+:\d+)/metrics")


@dataclass(frozen=True)
class Banner:
    """What the banner prints: URLs, and host:port of the gRPC port and each metrics port."""

    gateway: str
    console: str
    grpc: str
    metrics: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> Banner:
        def found(pattern: re.Pattern[str]) -> re.Match[str]:
            match = pattern.search(text)
            assert match is not None, f"no {pattern.pattern!r} in the banner:\n{text}"
            return match

        grpc = found(_GRPC)
        listed = found(_METRICS).group(1)
        return cls(
            gateway=found(_START_HERE).group(1),
            console=found(_CONSOLE).group(1),
            grpc=f"{grpc.group(1)}:{grpc.group(2)}",
            metrics=dict(_METRICS_PORT.findall(listed)),
        )


@dataclass
class Runner:
    process: subprocess.Popen[str]
    environment: dict[str, str]
    ports: StackPorts
    lines: list[str] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return Path(self.environment["R3MES_DATA_DIR"])

    @property
    def output(self) -> str:
        return "".join(self.lines)

    @property
    def banner(self) -> Banner:
        return Banner.parse(self.output[self.output.index(BANNER) :])

    @property
    def internal(self) -> tuple[tuple[str, str]]:
        """The internal token's gRPC metadata, read where a reader reads it (docs/console.md):
        the file `make run` wrote into its data folder."""
        token = (self.data_dir / "internal-token").read_text().strip()
        return ((INTERNAL_TOKEN_HEADER, token),)


def run_environment(ports: StackPorts, data_dir: Path) -> dict[str, str]:
    """`make run`'s defaults (no R3MES_* of the caller's leaks in: no internal token, no gateway
    secret, local rate limits, plain logs, one process), but free ports and its own data."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("R3MES_")}
    assert ports.console is not None
    chosen = {
        "R3MES_DATA_DIR": str(data_dir),
        # In one process every service listens on the first service's port.
        "R3MES_USERS_PORT": ports.grpc["users"],
        "R3MES_GATEWAY_PORT": ports.gateway,
        "R3MES_FRONTDOOR_PORT": ports.frontdoor,
        "R3MES_FRONTDOOR_GRPC_PORT": ports.frontdoor_grpc,
        "R3MES_CONSOLE_PORT": ports.console,
        "R3MES_METRICS_PORT": ports.metrics["services"],
        "R3MES_GATEWAY_METRICS_PORT": ports.metrics["gateway"],
        "R3MES_FRONTDOOR_METRICS_PORT": ports.metrics["frontdoor"],
        # The reference node too on a free port, not its fixed default (a developer's make run).
        "R3MES_REFERENCE_NODE_PORT": free_port(),
    }
    environment.update({name: str(value) for name, value in chosen.items()})
    return environment


def start_runner(environment: dict[str, str], through_make: bool = False) -> subprocess.Popen[str]:
    """The runner itself, or `make run` (`through_make`), whose child it then is."""
    return subprocess.Popen(
        ["make", "--no-print-directory", "run"]
        if through_make
        else [sys.executable, "-m", "runner.run"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_banner(runner: Runner) -> threading.Thread:
    """Wait for the banner; the thread returned goes on reading until the runner's output ends.
    No banner in time: the runner is killed and AssertionError says what it printed."""
    ready = threading.Event()

    def read() -> None:
        assert runner.process.stdout is not None
        for line in runner.process.stdout:
            runner.lines.append(line)
            if BANNER in line:
                ready.set()
        ready.set()  # its output ended: no banner will come

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    ready.wait(READY_TIMEOUT_SECONDS)
    if BANNER not in runner.output:
        runner.process.kill()
        runner.process.wait()
        raise AssertionError("no banner in time:\n" + "".join(runner.lines[-40:]))
    # The banner's last line, so that the whole of it has been read.
    while "Ctrl-C stops everything" not in runner.output and reader.is_alive():
        reader.join(0.05)
    return reader


def stop(runner: Runner) -> None:
    """Ctrl-C, as a reader stops it; the runner stops its children. A runner still running
    after STOP_TIMEOUT_SECONDS is killed: its children die with it (test_make_run.py)."""
    if runner.process.poll() is None:
        runner.process.send_signal(signal.SIGINT)
        try:
            runner.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            runner.process.kill()
            runner.process.wait()
            raise


@contextmanager
def running_make_run(data_dir: Path) -> Iterator[Runner]:
    """`make run` on free ports and `data_dir`, from its banner until the block ends."""
    ports = StackPorts.pick(metrics=True)
    environment = run_environment(ports, data_dir)
    started = Runner(start_runner(environment), environment, ports)
    try:
        wait_for_banner(started)
        yield started
    finally:
        stop(started)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except OSError:
        return False
    return state != "Z"


def _command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def descendants(pid: int) -> dict[int, str]:
    """Every living process under `pid` (children, theirs, ...): pid and command line."""
    return {child: _command_of(child) for child in process_tree(pid)[1:] if alive(child)}
