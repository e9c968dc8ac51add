"""Background jobs are never silent: a failure is logged once and published, a recovery too."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import REGISTRY

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


async def test_a_run_by_hand_waits_for_the_scheduled_one_so_their_outcomes_keep_their_order() -> (
    None
):
    inside = 0
    most_at_once = 0
    release = asyncio.Event()

    async def slow() -> None:
        nonlocal inside, most_at_once
        inside += 1
        most_at_once = max(most_at_once, inside)
        await release.wait()
        inside -= 1

    async def ignore(_name: str, _healthy: bool) -> None:
        return None

    job = PeriodicJob("sweeper", 3600, slow)
    job.start(ignore)
    await asyncio.sleep(0.01)  # the scheduled first run is inside `slow` now
    by_hand = asyncio.create_task(job.run_once())
    await asyncio.sleep(0.01)
    release.set()
    assert await by_hand
    await job.stop()

    assert most_at_once == 1


async def test_a_jobs_failures_health_schedule_and_last_success_are_in_its_series() -> None:
    def series(name: str) -> float | None:
        labels = {"service": "ledger", "job_name": "metered-sweeper"}
        return REGISTRY.get_sample_value(f"r3mes_background_job_{name}", labels)

    async def ignore(_name: str, _healthy: bool) -> None:
        return None

    job = PeriodicJob("metered-sweeper", 60.0, Flaky(failures=2))
    failures_before = series("failures_total") or 0.0
    job.start(ignore, "ledger")
    await job.stop()  # before its first scheduled run: the runs below are the test's
    started = series("last_success_timestamp_seconds")
    assert started is not None
    assert (series("healthy"), series("interval_seconds")) == (1, 60)

    assert not await job.run_once()
    assert not await job.run_once()
    assert (series("failures_total"), series("healthy")) == (failures_before + 2, 0)
    assert series("last_success_timestamp_seconds") == started  # its start, still
    assert await job.run_once()
    assert series("healthy") == 1
    last_success = series("last_success_timestamp_seconds")
    assert last_success is not None
    assert last_success >= started


async def test_stopping_lets_a_run_under_way_finish_rather_than_cut_it_off() -> None:
    started, finished = asyncio.Event(), asyncio.Event()

    async def sweep() -> None:
        started.set()
        await asyncio.sleep(0.05)  # a statement under way
        finished.set()

    job = PeriodicJob("sweeper", 60, sweep)
    job.start(_ignore)
    await started.wait()
    await job.stop()

    assert finished.is_set()


async def test_a_run_that_outlasts_the_grace_is_cancelled() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def stuck() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    job = PeriodicJob("sweeper", 60, stuck)
    job.start(_ignore)
    await started.wait()
    await job.stop(grace_seconds=0.05)

    assert cancelled.is_set()


async def _ignore(_name: str, _healthy: bool) -> None:
    return None
