"""One `make run` per data folder, and the processes of a dead one named rather than run beside.

`data/run.lock` is locked (flock) for as long as a runner lives (the kernel releases it when the
runner dies, however it dies) and records the runner's and its children's pids. A second runner
finds the lock taken and names the first; a runner that finds the lock free but the recorded
children still alive (the last runner was killed with SIGKILL and they outlived it) names them.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import IO, Any

LOCK_NAME = "run.lock"


class AlreadyRunning(Exception):
    """Why this runner must not start, in a sentence for the terminal."""


def _alive(pid: int, expected: str) -> bool:
    """Whether `pid` still runs the command we recorded (not a later process given that pid)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True  # no /proc (not Linux): the pid exists, which is all we can tell
    return expected in command


class RunLock:
    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / LOCK_NAME
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        """Lock, or raise AlreadyRunning naming the runner or the leftovers in the way."""
        file = self.path.open("a+")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            runner = self._recorded(file).get("runner", "?")
            file.close()
            raise AlreadyRunning(
                f"another `make run` (pid {runner}) is running on {self.path.parent}/: "
                "stop it first (Ctrl-C in its terminal), or give this one its own "
                "R3MES_DATA_DIR and ports"
            ) from None
        leftovers = {
            name: pid
            for name, (pid, command) in self._recorded(file).get("children", {}).items()
            if _alive(pid, command)
        }
        if leftovers:
            file.close()
            named = ", ".join(f"{name} (pid {pid})" for name, pid in leftovers.items())
            pids = " ".join(str(pid) for pid in leftovers.values())
            raise AlreadyRunning(
                f"processes of an earlier `make run` that was killed are still running: {named}. "
                f"Stop them (`kill {pids}`), then try again"
            )
        self._file = file

    def record(self, children: Mapping[str, tuple[int, str]]) -> None:
        """Write our pid and each child's (pid, command) for the next runner to check."""
        assert self._file is not None
        self._file.seek(0)
        self._file.truncate()
        json.dump({"runner": os.getpid(), "children": children}, self._file)
        self._file.flush()

    def release(self) -> None:
        if self._file is not None:
            self.record({})
            self._file.close()
            self._file = None

    @staticmethod
    def _recorded(file: IO[str]) -> dict[str, Any]:
        file.seek(0)
        with suppress(ValueError):
            recorded = json.loads(file.read() or "{}")
            if isinstance(recorded, dict):
                return recorded
        return {}
