"""A process whose event loop is saturated still limits exactly. Redis stays healthy; the
service reads its replies late because its own loop is busy, and that is no Redis outage:
nothing is admitted unchecked, nothing is logged, health stays SERVING."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.core.testing import RedisServer
from tests.integration.ratelimited import POLICIES, limited_server, limited_settings, policy_file
from tests.integration.rpc import failure_of, reply_headers
from tests.integration.test_ratelimit_redis_outage import HEALTH, get_balance

LIMIT = 10
CALLS = 2 * LIMIT
# Longer than the old 0.25 s decision timeout: a reply from Redis that arrives during a slice
# is read after it, however fast Redis answered.
SLICE_SECONDS = 0.3


@asynccontextmanager
async def busy_loop() -> AsyncIterator[None]:
    """Burns the CPU of this event loop in slices, yielding between them (the service's own
    calls are what keeps a real process this busy)."""
    stop = asyncio.Event()

    async def burn() -> None:
        while not stop.is_set():
            end = time.perf_counter() + SLICE_SECONDS
            while time.perf_counter() < end:
                pass
            # A timer, not sleep(0): the next slice then runs after the calls that woke in
            # the meantime, so it falls between their sends and the reading of Redis's
            # replies, as another call's work does in a busy process.
            await asyncio.sleep(0.001)

    burner = asyncio.create_task(burn())
    try:
        yield
    finally:
        stop.set()
        await burner


async def outcomes(channel: grpc.aio.Channel) -> Counter[str]:
    async with busy_loop():
        calls = await asyncio.gather(*(get_balance(channel) for _ in range(CALLS)))
    seen: Counter[str] = Counter()
    for call in calls:
        code = await call.code()
        if code is grpc.StatusCode.OK:
            # Without the `ratelimit` field the call was admitted unchecked (not counted).
            counted = "ratelimit" in await reply_headers(call)
            seen["OK" if counted else "OK unchecked"] += 1
            continue
        error = grpc.aio.AioRpcError(
            code,
            await call.initial_metadata(),
            await call.trailing_metadata(),
            await call.details(),
        )
        seen[f"{code.name} {failure_of(error).reason}"] += 1
    return seen


async def health_of(channel: grpc.aio.Channel) -> Any:
    request = health_pb2.HealthCheckRequest(service=HEALTH)
    return (await health_pb2_grpc.HealthStub(channel).Check(request)).status


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_saturated_process_admits_exactly_the_limit_and_stays_healthy(
    tmp_path: Path, fresh_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = limited_settings(tmp_path, redis_url=fresh_redis_server.url)
    policy_file(tmp_path, POLICIES.replace("read: 3/hour", f"read: {LIMIT}/hour"))
    async with limited_server(settings) as (_, channel):
        seen = await outcomes(channel)
        health = await health_of(channel)

    assert seen == {"OK": LIMIT, "RESOURCE_EXHAUSTED RATE_LIMITED": CALLS - LIMIT}
    assert health == health_pb2.HealthCheckResponse.SERVING
    assert warnings(caplog) == []


async def test_a_call_whose_decision_comes_too_late_is_refused_never_admitted_unchecked(
    tmp_path: Path, fresh_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Decisions outlive their deadline on the busy loop (those read before a slice do not);
    the probe finds Redis answering, so those calls are refused (retryable) whatever the
    failure policy, none is admitted uncounted, and no outage is declared."""
    settings = limited_settings(
        tmp_path,
        redis_url=fresh_redis_server.url,
        ratelimit_redis_failure="open",
        ratelimit_redis_decision_timeout_seconds=0.05,
    )
    policy_file(tmp_path, POLICIES.replace("read: 3/hour", f"read: {CALLS}/hour"))
    async with limited_server(settings) as (_, channel):
        seen = await outcomes(channel)
        health = await health_of(channel)

    # Counted admissions may come too; anything else is a refusal of a late decision.
    assert set(seen) - {"OK"} == {"RESOURCE_EXHAUSTED RATE_LIMITER_UNAVAILABLE"}
    assert health == health_pb2.HealthCheckResponse.SERVING
    assert warnings(caplog) == []
