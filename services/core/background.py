"""Background components of a service: periodic jobs (sweepers, pruners) that are never silent.

The original backend's background tasks failed without a trace. Here each job runs on its own
schedule inside the service's lifecycle; a failure is logged with its traceback the first time
and when the job recovers (not on every retry: a state change is news, a repeat is not), and the
job's state is published in the service's health under `<service>.<job>` (NOT_SERVING while it
fails), where operators and balancers already look.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from services.core import tracing
from services.core.metrics import JOB_FAILURES, JOB_HEALTHY, JOB_INTERVAL, JOB_LAST_SUCCESS

logger = logging.getLogger(__name__)

# How long stopping waits for a run under way (a sweep of a few statements) before cancelling it.
STOP_GRACE_SECONDS = 5.0

StatusListener = Callable[[str, bool], Awaitable[None]]


async def _ignore_status(_name: str, _healthy: bool) -> None:
    return None


@dataclass
class PeriodicJob:
    """Runs `run` every `interval_seconds` (the first time right after start)."""

    name: str
    interval_seconds: float
    run: Callable[[], Awaitable[object]]
    healthy: bool = True
    failures: int = 0
    runs: int = 0  # finished, failed or not: a caller can wait for the first after start
    # The service whose health shows the job, when a server hosts several (else the server's).
    service: str | None = None
    _task: asyncio.Task[None] | None = field(default=None, repr=False)
    _listener: StatusListener = field(default=_ignore_status, repr=False)
    # One run at a time: a run started by hand (an operator, a test) and one of the schedule
    # must not overlap, or an earlier run's success could be published after a later failure.
    _running: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def start(self, listener: StatusListener, service: str | None = None) -> None:
        """`service`: the job's service when it has none of its own (for its series)."""
        self._listener = listener
        self.service = self.service or service
        # Its start counts as its last success until it has one: a job stuck in its first run
        # then looks as overdue as one stuck later.
        JOB_LAST_SUCCESS.labels(*self._labels).set(time.time())
        JOB_HEALTHY.labels(*self._labels).set(1 if self.healthy else 0)
        JOB_INTERVAL.labels(*self._labels).set(self.interval_seconds)
        self._stopping.clear()
        self._task = asyncio.create_task(self._loop(), name=f"job:{self.name}")

    async def stop(self, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
        """Let a run under way finish (within `grace_seconds`), then end the schedule. A run
        cancelled in the middle of a statement would leave its connection to be reclaimed
        by the garbage collector, which logs the failed rollback as an error."""
        if self._task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace_seconds)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    async def run_once(self) -> bool:
        """One run; True when it succeeded. Never raises (but for cancellation)."""
        async with self._running:
            try:
                return await self._run_and_publish()
            finally:
                self.runs += 1

    async def _run_and_publish(self) -> bool:
        try:
            # With tracing on, a run is a trace of its own, its units of work below it (rather
            # than each unit a root of its own); its failure is recorded on it.
            with tracing.internal_span(f"job {self.name}", {"r3mes.job": self.name}):
                await self.run()
        except Exception:
            self.failures += 1
            JOB_FAILURES.labels(*self._labels).inc()
            JOB_HEALTHY.labels(*self._labels).set(0)
            if self.healthy:
                logger.exception("background job failed", extra={"job": self.name})
                self.healthy = False
                await self._listener(self.name, False)
            return False
        JOB_LAST_SUCCESS.labels(*self._labels).set(time.time())
        JOB_HEALTHY.labels(*self._labels).set(1)
        if not self.healthy:
            logger.warning(
                "background job recovered", extra={"job": self.name, "failures": self.failures}
            )
            self.healthy = True
            await self._listener(self.name, True)
        return True

    @property
    def _labels(self) -> tuple[str, str]:
        return (self.service or "", self.name)

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            await self.run_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval_seconds)
