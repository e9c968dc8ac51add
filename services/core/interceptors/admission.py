"""Admission: which calls the server still takes, and how many of them are still running.

On shutdown the server drains: every new call is answered UNAVAILABLE at once (clients retry
that code, on another replica) while the calls already running finish. grpc's own
`server.stop(grace)` cannot do this: calls that have arrived but not yet started when it is
called are cancelled (CANCELLED, which retry policies do not retry).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from services.core.errors import Unavailable
from services.core.settings import DRAIN_QUIET_SECONDS

# Health checks are still answered while draining, so that balancers read NOT_SERVING.
ALWAYS_ADMITTED_PREFIX = "/grpc.health."


class Admission:
    def __init__(self, quiet_seconds: float = DRAIN_QUIET_SECONDS) -> None:
        # Draining ends only once no call has been refused for this long (counted from the
        # drain's start when none has been): calls still arriving when the grpc server stops
        # would be cancelled by it, so they are answered (UNAVAILABLE) first. Calls grpc has
        # received but not yet handed to the loop cannot be seen; on a busy machine the loop
        # can take a tenth of a second to get to them.
        self.quiet_seconds = quiet_seconds
        self.draining = False
        self._running = 0
        self._last_refusal = float("-inf")
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def running(self) -> int:
        return self._running

    def enter(self, method_name: str) -> None:
        """Count the call in, or refuse it while draining."""
        if self.draining and not method_name.startswith(ALWAYS_ADMITTED_PREFIX):
            self._last_refusal = time.monotonic()
            raise Unavailable("the server is shutting down; retry the call", reason="SHUTTING_DOWN")
        self._running += 1
        self._idle.clear()

    def leave(self) -> None:
        self._running -= 1
        if self._running == 0:
            self._idle.set()

    async def drain(self, grace_seconds: float) -> float:
        """Refuse new calls and wait for the running ones (and for the stream of new calls to
        dry up); the grace period left is returned."""
        self.draining = True
        started = time.monotonic()
        deadline = started + grace_seconds
        while (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), left)
            quiet_for = time.monotonic() - max(self._last_refusal, started)
            if self._running == 0 and quiet_for >= self.quiet_seconds:
                break
            wait = min(self.quiet_seconds - quiet_for, deadline - time.monotonic())
            await asyncio.sleep(max(wait, 0))
        return max(deadline - time.monotonic(), 0.0)
