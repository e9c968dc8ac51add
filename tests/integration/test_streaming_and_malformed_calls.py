"""Calls the chain must render like any other: streaming handlers (reflection, health Watch)
and messages whose bytes do not parse, through a real server and a raw channel."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from pydantic import SecretStr

from services.core.settings import Settings
from services.core.testing import running_server
from services.credits.server import create_server
from tests.integration.rpc import failure_of

TOKEN = "streams-test-internal-token"
WRONG_TOKEN = (("x-r3mes-internal-token", "not-the-token"),)
GRANT = "/r3mes.credits.v1.CreditsService/GrantCredits"
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
# 0xff starts a field tag whose varint never ends; 0x0a 0x01 0xff is field 1 (a string) holding
# a byte that is not UTF-8.
GARBAGE = {"truncated-varint": b"\xff\xff\xff\xff", "not-utf8": b"\x0a\x01\xff"}


@pytest.fixture
async def channel(tmp_path: Path) -> AsyncIterator[grpc.aio.Channel]:
    settings = Settings(data_dir=tmp_path, internal_token=SecretStr(TOKEN))
    async with running_server(create_server, settings, "credits") as (_, channel):
        yield channel


def _no_traceback_logged(caplog: pytest.LogCaptureFixture) -> None:
    assert [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []


async def test_health_watch_with_a_wrong_internal_token_is_unauthenticated_with_its_reason(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    watch = health_pb2_grpc.HealthStub(channel).Watch(
        health_pb2.HealthCheckRequest(service=""), metadata=WRONG_TOKEN, timeout=5
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in watch:
            pass

    failure = failure_of(raised.value)
    assert (failure.code, failure.reason) == (grpc.StatusCode.UNAUTHENTICATED, "BAD_INTERNAL_TOKEN")
    assert failure.domain == "credits.r3mes.network"
    _no_traceback_logged(caplog)


async def test_reflection_with_a_wrong_internal_token_is_unauthenticated_with_its_reason(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    replies = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([request]), metadata=WRONG_TOKEN, timeout=5
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in replies:
            pass

    failure = failure_of(raised.value)
    assert (failure.code, failure.reason) == (grpc.StatusCode.UNAUTHENTICATED, "BAD_INTERNAL_TOKEN")
    _no_traceback_logged(caplog)


async def test_health_watch_with_the_right_token_still_streams(channel: grpc.aio.Channel) -> None:
    watch = health_pb2_grpc.HealthStub(channel).Watch(
        health_pb2.HealthCheckRequest(service=""),
        metadata=(("x-r3mes-internal-token", TOKEN),),
        timeout=5,
    )
    first = await watch.read()
    watch.cancel()

    assert isinstance(first, health_pb2.HealthCheckResponse)
    assert first.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("garbage", list(GARBAGE.values()), ids=list(GARBAGE))
async def test_a_message_that_does_not_parse_is_invalid_argument_naming_its_type(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture, garbage: bytes
) -> None:
    raw = cast("grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]", channel.unary_unary(GRANT))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await raw(garbage, metadata=(("x-r3mes-internal-token", TOKEN),), timeout=5)

    failure = failure_of(raised.value)
    assert (failure.code, failure.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_MESSAGE")
    assert (
        failure.message == "the request is not a valid r3mes.credits.v1.GrantCreditsRequest message"
    )
    for leak in ("DecodeError", "class", "Traceback"):
        assert leak not in (raised.value.details() or "")
    _no_traceback_logged(caplog)


async def test_a_streamed_message_that_does_not_parse_is_invalid_argument(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    raw = cast(
        "grpc.aio.StreamStreamMultiCallable[bytes, bytes]", channel.stream_stream(REFLECTION)
    )
    replies = raw(iter([GARBAGE["truncated-varint"]]), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in replies:
            pass

    failure = failure_of(raised.value)
    assert (failure.code, failure.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_MESSAGE")
    assert "ServerReflectionRequest" in failure.message
    _no_traceback_logged(caplog)
