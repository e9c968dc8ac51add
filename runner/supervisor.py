"""Child processes of `make run`: started with a clean exec, their output prefixed line by line,
stopped in order, and never left behind.

Hand-written rather than honcho: honcho forks from the runner itself, and the runner must never
fork once gRPC is loaded (gRPC's threads make fork unsafe: it crashed about one start in eight).
Here every child is a fresh `exec` through subprocess, and on Linux each asks the kernel for
SIGTERM when the runner dies (PR_SET_PDEATHSIG), so a runner killed with SIGKILL leaves nothing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_COLOURS = ("36", "33", "32", "35", "34", "31")


def die_with_parent(parent: int) -> None:
    """Ask the kernel for SIGTERM when `parent` ends (Linux only). Each child runs it between
    fork and exec (so it must not take any lock); the runner runs it for itself."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the runner died before the call above: follow it now
        os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]


def _terminate(child: Child) -> None:
    if child.process.poll() is None:
        child.process.send_signal(signal.SIGTERM)


@dataclass
class Supervisor:
    """Start children (all of them before any output thread starts: see `start`), print their
    lines as `name | line`, stop them in reverse order of start."""

    cwd: Path
    environment: Mapping[str, str]
    output: IO[str] = sys.stdout
    children: list[Child] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _width: int = 0

    def start(
        self,
        commands: Sequence[tuple[str, list[str]]],
        environments: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """Start every command (with `environments[name]` added to its environment), then
        their output threads.

        No thread of ours runs while subprocess forks (the pre-exec hook would be unsafe with
        threads), so every child is started before the first output thread.
        """
        parent = os.getpid()
        hook = (lambda: die_with_parent(parent)) if sys.platform == "linux" else None
        self._width = max(len(name) for name, _ in commands)
        for name, command in commands:
            process = subprocess.Popen(
                command,
                cwd=self.cwd,
                env={**self.environment, **(environments or {}).get(name, {})},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                # Its own process group: Ctrl-C reaches only the runner, which stops the
                # children in order (the gateway before the services it calls).
                process_group=0,
                preexec_fn=hook,
            )
            self.children.append(Child(name, process))
        for index, child in enumerate(self.children):
            colour = _COLOURS[index % len(_COLOURS)]
            threading.Thread(
                target=self._copy, args=(child, colour), name=f"output-{child.name}", daemon=True
            ).start()

    def say(self, text: str, name: str = "run") -> None:
        for line in text.splitlines() or [""]:
            self._write(name, line, "1")

    def _copy(self, child: Child, colour: str) -> None:
        assert child.process.stdout is not None
        for raw in child.process.stdout:
            self._write(child.name, raw.decode(errors="replace").rstrip("\n"), colour)

    def _write(self, name: str, line: str, colour: str) -> None:
        prefix = f"{name:<{self._width}} | "
        if self.output.isatty():
            prefix = f"\033[{colour}m{prefix}\033[0m"
        with self._lock, suppress(BrokenPipeError, ValueError):
            # A closed reader (`make run | head`) must not stop the runner from stopping others.
            self.output.write(prefix + line + "\n")
            self.output.flush()

    def exited(self) -> Child | None:
        """The first child that has exited, if any."""
        return next((c for c in self.children if c.process.poll() is not None), None)

    def stop(self, timeout_seconds: float) -> None:
        """SIGTERM the newest child first (the gateway: no new call then reaches the others) and
        give it a second, then all the others at once (they drain side by side); SIGKILL those
        still running at the timeout."""
        if not self.children:
            return
        *others, newest = self.children
        _terminate(newest)
        with suppress(subprocess.TimeoutExpired):
            newest.process.wait(timeout=1.0)
        for child in others:
            _terminate(child)
        deadline = time.monotonic() + timeout_seconds
        for child in reversed(self.children):
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"{child.name} did not stop in time: killed")
                child.process.kill()
                child.process.wait()
