"""Background jobs are never silent: a failure is logged once and published, a recovery too."""

from __future__ import annotations

import asyncio
import logging

import pytest

from services.core.background import PeriodicJob


class Flaky:
    """Fails `failures` times, then succeeds."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.runs = 0

    async def __call__(self) -> None:
        self.runs += 1
        if self.runs <= self.failures:
            raise RuntimeError("the sweep could not reach its table")


async def test_a_failing_job_is_logged_once_published_unhealthy_then_healthy_on_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    published: list[tuple[str, bool]] = []
    recovered = asyncio.Event()

    async def listener(name: str, healthy: bool) -> None:
        published.append((name, healthy))
        if healthy:
            recovered.set()

    run = Flaky(failures=3)
    job = PeriodicJob("sweeper", 0.01, run)
    with caplog.at_level(logging.INFO, logger="services.core.background"):
        job.start(listener)
        try:
            await asyncio.wait_for(recovered.wait(), 5)
        finally:
            await job.stop()

    assert published == [("sweeper", False), ("sweeper", True)]
    failures = [r for r in caplog.records if r.getMessage() == "background job failed"]
    assert len(failures) == 1, "a failure is news once, not on every retry"
    assert failures[0].exc_info is not None
    assert "background job recovered" in [r.getMessage() for r in caplog.records]
    assert job.failures == 3
    assert job.healthy


async def test_a_stopped_job_runs_no_more() -> None:
    run = Flaky(failures=0)
    job = PeriodicJob("pruner", 0.01, run)

    async def ignore(_name: str, _healthy: bool) -> None:
        return None

    job.start(ignore)
    await asyncio.sleep(0.05)
    await job.stop()
    runs = run.runs
    await asyncio.sleep(0.05)

    assert runs >= 1
    assert run.runs == runs
