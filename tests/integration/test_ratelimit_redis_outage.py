"""Redis goes away mid-test (SIGSTOP: hung; SIGTERM: gone): the configured failure policy
applies, the change is logged once and shows in health, and no call is ever a server error."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from r3mes.credits.v1 import credits_pb2, credits_pb2_grpc

from services.core.settings import Settings
from services.core.testing import RedisServer, metric_value, new_wallet_address
from tests.integration.ratelimited import limited_server, limited_settings, retry_delay_seconds
from tests.integration.rpc import failure_of, reply_headers

HEALTH = "credits.ratelimit"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def redis_settings(tmp_path: Path, fresh_redis_server: RedisServer, failure: str) -> Settings:
    return limited_settings(
        tmp_path,
        redis_url=fresh_redis_server.url,
        ratelimit_redis_failure=failure,
        ratelimit_redis_timeout_seconds=0.2,
        ratelimit_redis_decision_timeout_seconds=0.2,
        ratelimit_redis_probe_seconds=0.2,
    )


async def get_balance(
    channel: grpc.aio.Channel,
) -> grpc.aio.UnaryUnaryCall[credits_pb2.GetBalanceRequest, credits_pb2.GetBalanceResponse]:
    request = credits_pb2.GetBalanceRequest(wallet_address=new_wallet_address())
    call = credits_pb2_grpc.CreditsServiceStub(channel).GetBalance(
        request, metadata=(("x-forwarded-for", "10.9.0.1"),)
    )
    with contextlib.suppress(grpc.aio.AioRpcError):
        await call
    return call


async def health_becomes(channel: grpc.aio.Channel, wanted: int) -> int:
    health = health_pb2_grpc.HealthStub(channel)
    status = -1
    for _ in range(100):
        status = (await health.Check(health_pb2.HealthCheckRequest(service=HEALTH))).status
        if status == wanted:
            break
        await asyncio.sleep(0.05)
    return status


def job_log(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.getMessage() == message and getattr(r, "job", "") == "ratelimit"
    ]


async def test_a_hung_redis_fails_open_logged_once_and_in_health_then_recovers(
    tmp_path: Path, fresh_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    unchecked_before = metric_value(
        "r3mes_ratelimit_decisions_total", policy="read", result="unchecked"
    )
    async with limited_server(redis_settings(tmp_path, fresh_redis_server, "open")) as (_, channel):
        before = await reply_headers(await get_balance(channel))
        failing_open = [metric_value("r3mes_ratelimit_failing_open")]
        fresh_redis_server.pause()
        during = [await get_balance(channel) for _ in range(5)]
        down = await health_becomes(channel, NOT_SERVING)
        failing_open.append(metric_value("r3mes_ratelimit_failing_open"))
        more = [await get_balance(channel) for _ in range(3)]
        fresh_redis_server.resume()
        up = await health_becomes(channel, SERVING)
        failing_open.append(metric_value("r3mes_ratelimit_failing_open"))
        after = await reply_headers(await get_balance(channel))

        codes = [await call.code() for call in (*during, *more)]
        during_headers = await reply_headers(during[-1])

    assert before["ratelimit"] == '"read";r=2;t=1200'
    # Five calls, more than the two left: admitted unchecked, with the policy but no count.
    assert codes == [grpc.StatusCode.OK] * 8
    assert during_headers["ratelimit-policy"] == '"read";q=3;w=3600'
    assert "ratelimit" not in during_headers
    assert (down, up) == (NOT_SERVING, SERVING)
    # Its series say so too: failing open while Redis hung, every such call counted unchecked.
    assert [value - failing_open[0] for value in failing_open] == [0, 1, 0]
    unchecked = metric_value("r3mes_ratelimit_decisions_total", policy="read", result="unchecked")
    assert unchecked - unchecked_before == 8
    # One line when the state changes, one when it changes back; nothing per call.
    changes = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.getMessage(), getattr(r, "job", "")) for r in changes] == [
        ("background job failed", "ratelimit"),
        ("background job recovered", "ratelimit"),
    ]
    assert "ratelimit_redis_failure=open" in str(changes[0].exc_info[1])  # type: ignore[index]
    # Counting resumes: the calls admitted unchecked were not charged, but for the first, whose
    # script was already on its way when the client gave up; the hung Redis ran it on waking.
    assert after["ratelimit"] == '"read";r=0;t=3600'


async def test_a_stopped_redis_fails_closed_with_retry_info_never_a_server_error(
    tmp_path: Path, fresh_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with limited_server(redis_settings(tmp_path, fresh_redis_server, "closed")) as (
        _,
        channel,
    ):
        assert await (await get_balance(channel)).code() == grpc.StatusCode.OK
        fresh_redis_server.process.terminate()
        fresh_redis_server.process.wait(timeout=10)
        refused = [await get_balance(channel) for _ in range(5)]
        down = await health_becomes(channel, NOT_SERVING)
        errors = [
            grpc.aio.AioRpcError(
                await call.code(),
                await call.initial_metadata(),
                await call.trailing_metadata(),
                await call.details(),
            )
            for call in refused
        ]

    assert [error.code() for error in errors] == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 5
    assert {failure_of(error).reason for error in errors} == {"RATE_LIMITER_UNAVAILABLE"}
    assert retry_delay_seconds(errors[0]) == pytest.approx(0.2)
    assert down == NOT_SERVING
    assert len(job_log(caplog, "background job failed")) == 1
