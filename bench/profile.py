"""Where a service's CPU goes under load: py-spy samples the process, and the collapsed stacks
it writes (`--format raw`: one `frame;frame;... count` line per distinct stack) are summed here
into the functions that were running (self), the packages they belong to, and the functions
that were on the stack (total) below the event loop and thread start-up every stack shares."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

SAMPLES_PER_SECOND = 100
# "name (file:line)": the line changes along one function, so it is dropped.
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
# On every stack of the process: the interpreter's start, the loop, the threads' bootstrap.
SPINE_FILES = (
    *("<frozen runpy>", "asyncio/", "threading.py", "selectors.py"),
    *("services/users/__main__.py", "services/users/server.py"),
)
SPINE_FRAMES = ("run (services/core/lifecycle.py)", "main (services/core/lifecycle.py)")
# What a sample's time is spent on: the first frame from the leaf up whose file is listed
# decides. The event loop and the stdlib it uses are listed nowhere, so asyncio work done for a
# peer call counts as the peer call's (protobuf's work too: the servicer's, or the chain's
# when validating); what no frame claims ran straight from the loop, which is where grpc's
# Cython core (invisible to py-spy, server and client side alike) does its work.
SUBSYSTEMS = (
    ("logging", ("logging/", "services/core/logging.py")),
    (
        "database (SQLAlchemy, driver, repository)",
        (
            *("sqlalchemy/", "<sqlalchemy", "aiosqlite/", "asyncpg/", "services/core/db.py"),
            *("services/core/repository.py", "services/core/uow.py"),
            # Every service's: one process hosts them all by default (services.core.hosting).
            *("services/users/repository.py", "services/credits/repository.py"),
            *("services/credits/moves.py", "services/mining/repository.py"),
        ),
    ),
    (
        "peer calls (grpc.aio client)",
        (
            *("grpc/aio/", "grpc/_common.py", "services/users/peers.py"),
            *("services/core/clients.py", "services/core/colocated.py"),
        ),
    ),
    (
        "interceptor chain (validation included)",
        (
            *("services/core/interceptors/", "grpc_interceptor/", "services/core/auth.py"),
            *("services/core/network.py", "services/core/errors.py"),
            *("services/core/validators.py", "ipaddress.py", "uuid.py", "bech32"),
        ),
    ),
    ("servicer", ("services/users/", "services/credits/", "services/mining/")),
)
UNCLAIMED = "event loop and grpc's Cython core (server and client)"


@dataclass(frozen=True)
class FrameShare:
    frame: str
    percent: float


@dataclass(frozen=True)
class ProfileSummary:
    samples: int
    self_time: list[FrameShare]
    by_package: list[FrameShare]
    by_subsystem: list[FrameShare]
    total_time: list[FrameShare]

    def as_json(self) -> dict[str, object]:
        return {
            "samples": self.samples,
            **{
                name: [[share.frame, share.percent] for share in shares]
                for name, shares in (
                    ("self", self.self_time),
                    ("self_by_package", self.by_package),
                    ("by_subsystem", self.by_subsystem),
                    ("total", self.total_time),
                )
            },
        }


def frame_name(frame: str) -> str:
    found = _FRAME.match(frame.strip())
    return f"{found['function']} ({found['file']})" if found else frame.strip()


def package(frame: str) -> str:
    """The package a frame's file belongs to: `sqlalchemy`, `logging`, `services/core`..."""
    found = _FRAME.match(frame)
    if found is None:
        return frame
    parts = found["file"].removesuffix(".py").split("/")
    return "/".join(parts[:2]) if parts[0] == "services" and len(parts) > 2 else parts[0]


def subsystem(frames: list[str]) -> str:
    """What the sample whose stack is `frames` (root first) was spent on."""
    for frame in reversed(frames):
        if _on_spine(frame):
            continue
        found = _FRAME.match(frame)
        file = found["file"] if found else ""
        for name, prefixes in SUBSYSTEMS:
            if file.startswith(prefixes):
                return name
    return UNCLAIMED


def _on_spine(frame: str) -> bool:
    found = _FRAME.match(frame)
    return frame in SPINE_FRAMES or (found is not None and found["file"].startswith(SPINE_FILES))


def summarize(collapsed: str, limit: int = 15) -> ProfileSummary:
    """The `limit` frames with most samples, as running (self) and anywhere on the stack (total,
    each frame counted once per sample however deep it recurses); percentages of all samples."""
    self_counts: Counter[str] = Counter()
    package_counts: Counter[str] = Counter()
    subsystem_counts: Counter[str] = Counter()
    total_counts: Counter[str] = Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [frame_name(frame) for frame in stack.split(";")]
        samples += count
        self_counts[frames[-1]] += count
        package_counts[package(frames[-1])] += count
        subsystem_counts[subsystem(frames)] += count
        for frame in set(frames):
            if not _on_spine(frame):
                total_counts[frame] += count

    def shares(counts: Counter[str]) -> list[FrameShare]:
        return [
            FrameShare(frame, round(100 * n / samples, 1)) for frame, n in counts.most_common(limit)
        ]

    return ProfileSummary(
        samples,
        shares(self_counts),
        shares(package_counts),
        shares(subsystem_counts),
        shares(total_counts),
    )


def py_spy() -> str:
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if found is None:
        raise FileNotFoundError("no py-spy: it comes with the dev extras (make install)")
    return found


def start_recording(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """Sample `pid` for `seconds` in the background, without pausing it (--nonblocking).

    Only the thread holding the GIL is sampled (--gil): a thread waiting on a queue or a socket
    (aiosqlite's worker, the loop's epoll) is otherwise often counted as busy, which hides where
    the Python work goes. C work done without the GIL (SQLite's own, gRPC core's threads) is left
    out: the CPU figures of the benchmark's table count it, this profile does not."""
    return subprocess.Popen(
        [
            py_spy(),
            *("record", "--pid", str(pid), "--duration", str(round(seconds))),
            *("--rate", str(SAMPLES_PER_SECOND), "--gil", "--nonblocking", "--format", "raw"),
            *("--output", str(out)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def finish_recording(recording: subprocess.Popen[bytes], out: Path) -> ProfileSummary:
    _, errors = recording.communicate(timeout=60)
    if recording.returncode != 0:
        raise RuntimeError(f"py-spy failed: {errors.decode(errors='replace')}")
    return summarize(out.read_text())
