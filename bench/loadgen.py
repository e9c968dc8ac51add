"""The load generators of the benchmarks: h2load for gRPC, wrk for REST (Debian packages that
`make bench-tools` installs), so the load comes from native code and not from a Python client
competing with the services for the machine's cores.

Their reports are text made for people; the parsers below turn them into numbers. h2load prints
no percentiles, so its per-request log file (start, HTTP status, microseconds) is read for them.
"""

from __future__ import annotations

import math
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from google.protobuf.message import Message

GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")
# wrk prints durations with the unit it finds readable.
WRK_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float

    def summary(self) -> dict[str, float | int]:
        return asdict(self)


def grpc_frame(message: Message) -> bytes:
    """A gRPC length-prefixed message: flag 0 (uncompressed), 4-byte big-endian length, body.

    Hand-written: h2load sends a file's bytes as the request body and knows nothing of gRPC.
    """
    body = message.SerializeToString()
    return struct.pack(">BI", 0, len(body)) + body


def _number(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    if found is None:
        raise ValueError(f"no match for {pattern!r} in the load generator's report:\n{text}")
    return float(found.group(1))


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of ascending values (nan when there are none)."""
    if not ordered:
        return float("nan")
    return ordered[max(1, math.ceil(len(ordered) * fraction)) - 1]


def parse_h2load(report: str, request_log: str) -> LoadResult:
    """h2load's summary and its `--log-file`. Every gRPC reply is HTTP 200 (the gRPC status
    travels in trailers, which h2load does not read), so errors are requests h2load itself
    counts as failed (non-2xx/3xx, reset or broken streams) or timed out."""
    failed = _number(r"requests: .*?(\d+) failed", report)
    timed_out = _number(r"requests: .*?(\d+) timeout", report)
    durations_ms = sorted(
        int(fields[2]) / 1000
        for fields in (line.split("\t") for line in request_log.splitlines() if line)
        if 200 <= int(fields[1]) < 300
    )
    return LoadResult(
        requests=int(_number(r"requests: .*?(\d+) done", report)),
        errors=int(failed + timed_out),
        rps=_number(r"finished in [\d.]+\w+, ([\d.]+) req/s", report),
        p50_ms=percentile(durations_ms, 0.50),
        p99_ms=percentile(durations_ms, 0.99),
    )


def _wrk_duration_ms(value: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", value)
    if found is None:
        raise ValueError(f"not a wrk duration: {value!r}")
    return float(found.group(1)) * WRK_UNITS_MS[found.group(2)]


def parse_wrk(report: str) -> LoadResult:
    """wrk's report with `--latency`: errors are non-2xx/3xx replies plus socket errors."""
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", report)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", report
    )
    errors = (int(non_2xx.group(1)) if non_2xx else 0) + (
        sum(int(n) for n in sockets.groups()) if sockets else 0
    )

    def latency(label: str) -> float:
        found = re.search(rf"^\s*{label}%\s+(\S+)\s*$", report, re.MULTILINE)
        if found is None:
            raise ValueError(f"no {label}% latency in wrk's report (run with --latency):\n{report}")
        return _wrk_duration_ms(found.group(1))

    return LoadResult(
        requests=int(_number(r"(\d+) requests in", report)),
        errors=errors,
        rps=_number(r"Requests/sec:\s+([\d.]+)", report),
        p50_ms=latency("50"),
        p99_ms=latency("99"),
    )


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed: run `make bench-tools`")
    return found


def _run(command: list[str], timeout_seconds: float) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_seconds)
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout


@dataclass(frozen=True)
class Load:
    """How hard: the same for every path of a run (16 in flight, as wrk's 16 connections)."""

    connections: int = 4
    streams_per_connection: int = 4

    @property
    def in_flight(self) -> int:
        return self.connections * self.streams_per_connection


def h2load_grpc(
    url: str,
    message: Message,
    load: Load,
    seconds: int,
    *,
    count: int | None = None,
    extra_headers: Sequence[str] = (),
) -> LoadResult:
    """POST one gRPC message over and over (h2c, prior knowledge) for `seconds`, or exactly
    `count` times when given (so that a server-side counter can be divided by the calls), with
    `extra_headers` ("name: value") on every request."""
    length = ("-D", str(seconds)) if count is None else ("-n", str(count))
    with tempfile.TemporaryDirectory(prefix="r3mes-h2load-") as folder:
        body, log = Path(folder) / "request.bin", Path(folder) / "requests.tsv"
        body.write_bytes(grpc_frame(message))
        headers = [arg for header in (*GRPC_HEADERS, *extra_headers) for arg in ("-H", header)]
        report = _run(
            [
                _tool("h2load"),
                *("-t", "1", "-c", str(load.connections), "-m", str(load.streams_per_connection)),
                *(*length, "--log-file", str(log), *headers, "-d", str(body), url),
            ],
            timeout_seconds=seconds + 30 if count is None else 600,
        )
        return parse_h2load(report, log.read_text())


def wrk_get(url: str, load: Load, seconds: int) -> LoadResult:
    """GET `url` for `seconds` from `load.in_flight` keep-alive connections."""
    command = [_tool("wrk"), "-t", "1", "-c", str(load.in_flight), "-d", f"{seconds}s", "--latency"]
    return parse_wrk(_run([*command, url], timeout_seconds=seconds + 30))
