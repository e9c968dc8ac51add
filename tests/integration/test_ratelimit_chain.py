"""Rate limiting as a caller meets it: a real server, its chain and the in-process backend."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from r3mes.credits.v1 import credits_pb2, credits_pb2_grpc

from services.core.ratelimit import PolicyFileError
from services.core.settings import Settings
from services.core.testing import new_wallet_address
from tests.integration.ratelimited import (
    FROM_GATEWAY,
    TOKEN,
    WALLET_HEADER,
    Balances,
    create_limited_server,
    limited_server,
    limited_settings,
    policy_file,
    quota_subjects,
    retry_delay_seconds,
)
from tests.integration.rpc import failure_of, reply_headers

Metadata = tuple[tuple[str, str], ...]


async def balance(
    channel: grpc.aio.Channel, *, wallet: str | None = None, via: str | None = None, **kw: str
) -> grpc.aio.UnaryUnaryCall[credits_pb2.GetBalanceRequest, credits_pb2.GetBalanceResponse]:
    """GetBalance as `wallet` (anonymous when None), forwarded by the gateway for `via` when
    given."""
    metadata: list[tuple[str, str]] = []
    if wallet is not None:
        metadata.append((WALLET_HEADER, wallet))
    if via is not None:
        metadata.extend((("x-forwarded-for", via), *FROM_GATEWAY))
    metadata.extend(kw.items())
    request = credits_pb2.GetBalanceRequest(wallet_address=new_wallet_address())
    call = credits_pb2_grpc.CreditsServiceStub(channel).GetBalance(request, metadata=metadata)
    with contextlib.suppress(grpc.aio.AioRpcError):
        await call  # the test reads code and metadata from the call
    return call


async def error_of(call: grpc.aio.UnaryUnaryCall[Any, Any]) -> grpc.aio.AioRpcError:
    """The failure of a finished call, as the client library would have raised it."""
    return grpc.aio.AioRpcError(
        await call.code(),
        await call.initial_metadata(),
        await call.trailing_metadata(),
        await call.details(),
    )


async def codes(channel: grpc.aio.Channel, count: int, **kw: str) -> list[grpc.StatusCode]:
    return [await (await balance(channel, **kw)).code() for _ in range(count)]


OK, LIMITED = grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_an_admitted_call_carries_the_policy_and_what_is_left(tmp_path: Path) -> None:
    async with limited_server(limited_settings(tmp_path)) as (_, channel):
        first = await balance(channel, wallet=new_wallet_address())
        headers = await reply_headers(first)

    assert await first.code() == OK
    assert headers["ratelimit-policy"] == '"read";q=3;w=3600'
    # Two calls left of three; the bucket is full again 20 minutes (one interval) from now.
    assert headers["ratelimit"] == '"read";r=2;t=1200'


async def test_an_admitted_calls_headers_leave_in_its_answers_trailers_so_a_crash_stays_retryable(
    tmp_path: Path,
) -> None:
    # Headers sent on their own, before the handler ran or before the answer, commit the
    # call: a replica dying meanwhile would leave a reset stream that no retry policy
    # retries, instead of UNAVAILABLE. In the trailers they leave with the answer, one batch.
    answer = asyncio.Event()
    balances = Balances(answer)  # type: ignore[abstract]
    async with limited_server(limited_settings(tmp_path), balances) as (_, channel):
        # As a stream on the client's side, so that the headers are seen when they arrive (a
        # unary call's arrive with its answer); the same bytes on the wire.
        get_balance = channel.unary_stream(
            "/r3mes.credits.v1.CreditsService/GetBalance",
            request_serializer=credits_pb2.GetBalanceRequest.SerializeToString,
            response_deserializer=credits_pb2.GetBalanceResponse.FromString,
        )
        request = credits_pb2.GetBalanceRequest(wallet_address=new_wallet_address())
        call = get_balance(request, metadata=((WALLET_HEADER, new_wallet_address()),))
        headers = asyncio.ensure_future(call.initial_metadata())
        await balances.running.wait()
        # Answered after anything the server sent on this connection before it; then a moment
        # for the client to surface headers that had come.
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        sent_while_running, _ = await asyncio.wait({headers}, timeout=0.5)
        answer.set()
        answered = [reply async for reply in call]

    assert not sent_while_running
    assert len(answered) == 1
    assert "ratelimit-policy" not in dict(await headers)
    assert dict(await call.trailing_metadata())["ratelimit-policy"] == '"read";q=3;w=3600'


async def test_the_call_past_the_quota_is_refused_with_retry_info_and_the_bucket(
    tmp_path: Path,
) -> None:
    async with limited_server(limited_settings(tmp_path)) as (_, channel):
        assert await codes(channel, 3, via="10.0.0.1") == [OK, OK, OK]
        refused = await balance(channel, via="10.0.0.1")
        code = await refused.code()
        headers = await reply_headers(refused)
        error = await error_of(refused)

    assert code == LIMITED
    failure = failure_of(error)
    assert failure.reason == "RATE_LIMITED"
    assert quota_subjects(error) == ["ip:10.0.0.1"]
    assert retry_delay_seconds(error) == pytest.approx(1200, abs=1)
    assert headers["ratelimit-policy"] == '"read";q=3;w=3600'
    assert headers["ratelimit"] == '"read";r=0;t=3600'
    assert headers["retry-after"] == "1200"


async def test_one_wallet_cannot_escape_its_bucket_by_changing_address(tmp_path: Path) -> None:
    wallet = new_wallet_address()
    async with limited_server(limited_settings(tmp_path)) as (_, channel):
        spent = [
            await (await balance(channel, wallet=wallet, via=f"10.0.1.{i}")).code()
            for i in range(3)
        ]
        refused = await balance(channel, wallet=wallet, via="10.0.1.9")
        error = await error_of(refused)
        # The refusal charged nothing: 10.0.1.9 still has its three calls for another wallet.
        other = await codes(channel, 4, wallet=new_wallet_address(), via="10.0.1.9")

    assert spent == [OK, OK, OK]
    assert quota_subjects(error) == [f"wallet:{wallet}"]
    assert other == [OK, OK, OK, LIMITED]


async def test_clients_behind_one_trusted_proxy_have_a_bucket_each(tmp_path: Path) -> None:
    async with limited_server(limited_settings(tmp_path)) as (_, channel):
        first = await codes(channel, 4, via="10.0.2.1")
        second = await codes(channel, 4, via="10.0.2.2")

    assert first == second == [OK, OK, OK, LIMITED]


async def test_a_forwarded_address_from_an_untrusted_peer_is_one_bucket_with_its_peer(
    tmp_path: Path,
) -> None:
    settings = limited_settings(tmp_path, trusted_proxies=["192.0.2.0/24"])
    async with limited_server(settings) as (_, channel):
        spent = [await (await balance(channel, via=f"10.0.3.{i}")).code() for i in range(3)]
        refused = await balance(channel, via="10.0.3.9")
        error = await error_of(refused)

    assert spent == [OK, OK, OK]
    assert quota_subjects(error) == ["ip:127.0.0.1"]


async def test_calls_refused_for_bad_input_or_credentials_cost_no_token(tmp_path: Path) -> None:
    async with limited_server(limited_settings(tmp_path)) as (_, channel):
        stub = credits_pb2_grpc.CreditsServiceStub(channel)
        bad_input = []
        for _ in range(5):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.GetBalance(
                    credits_pb2.GetBalanceRequest(wallet_address="not-a-wallet"),
                    metadata=(("x-forwarded-for", "10.0.4.1"), *FROM_GATEWAY),
                )
            bad_input.append(refused.value.code())
        bad_credentials = await codes(channel, 5, wallet="bad", via="10.0.4.1")
        good = await codes(channel, 4, via="10.0.4.1")

    assert bad_input == [grpc.StatusCode.INVALID_ARGUMENT] * 5
    assert bad_credentials == [grpc.StatusCode.UNAUTHENTICATED] * 5
    assert good == [OK, OK, OK, LIMITED]


async def test_internal_callers_are_exempt_and_carry_no_headers(tmp_path: Path) -> None:
    internal = {"x-r3mes-internal-token": TOKEN}
    async with limited_server(limited_settings(tmp_path)) as (_, channel):
        calls = [await balance(channel, **internal) for _ in range(6)]
        codes_seen = [await call.code() for call in calls]
        headers = await reply_headers(calls[-1])

    assert codes_seen == [OK] * 6
    assert "ratelimit" not in headers


async def test_a_methods_policy_is_the_one_its_proto_declares(tmp_path: Path) -> None:
    async with limited_server(limited_settings(tmp_path)) as (_, channel):
        stub = credits_pb2_grpc.CreditsServiceStub(channel)
        request = credits_pb2.GetCreditsTotalRequest()
        first = stub.GetCreditsTotal(request)
        with pytest.raises(grpc.aio.AioRpcError):
            await first  # not built by the stand-in: UNIMPLEMENTED, after the limiter
        headers = await reply_headers(first)

    assert headers["ratelimit-policy"] == '"read";q=3;w=3600'


async def test_health_checks_are_never_limited(tmp_path: Path) -> None:
    async with limited_server(limited_settings(tmp_path)) as (_, channel):
        health = health_pb2_grpc.HealthStub(channel)
        answers = [
            (await health.Check(health_pb2.HealthCheckRequest(service=""))).status
            for _ in range(10)
        ]

    assert answers == [health_pb2.HealthCheckResponse.SERVING] * 10


async def test_a_limiter_that_is_off_limits_nothing(tmp_path: Path) -> None:
    settings = limited_settings(tmp_path, ratelimit_backend="off")
    async with limited_server(settings) as (_, channel):
        seen = await codes(channel, 5, via="10.0.5.1")

    assert seen == [OK] * 5


GET_BALANCE = "r3mes.credits.v1.CreditsService.GetBalance"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (
            f"policies: {{read: 3/hour}}\ndefault: read\nmethods: {{{GET_BALANCE}e: read}}\n",
            f"'{GET_BALANCE}e' is not a method the protos declare",
        ),
        (
            f"policies: {{read: 3 per hour}}\ndefault: read\nmethods: {{{GET_BALANCE}: read}}\n",
            "policies: read: '3 per hour' is not a rate",
        ),
        (
            f"policies: {{read: 0/hour}}\ndefault: read\nmethods: {{{GET_BALANCE}: read}}\n",
            "at least one call",
        ),
        (
            f"policies: {{read: 3/hour}}\ndefault: write\nmethods: {{{GET_BALANCE}: read}}\n",
            "default: 'write' is not one of the policies (read)",
        ),
    ],
)
async def test_a_bad_policy_file_stops_the_service_naming_the_entry(
    tmp_path: Path, text: str, named: str
) -> None:
    path = policy_file(tmp_path, text)
    settings = Settings(data_dir=tmp_path, ratelimit_policies_file=path, ports={"credits": 0})

    with pytest.raises(PolicyFileError) as refused:
        await create_limited_server(settings)

    assert str(refused.value).startswith(f"rate-limit policies {path}: ")
    assert named in str(refused.value)


def documented_headers() -> dict[str, str]:
    """The example headers of docs/ratelimits.md."""
    documented = (Path(__file__).resolve().parents[2] / "docs" / "ratelimits.md").read_text()
    block = documented.split("ratelimit-policy: ", 1)[1].split("```", 1)[0]
    lines = f"ratelimit-policy: {block}".strip().splitlines()
    return dict(tuple(line.split(": ", 1)) for line in lines)  # type: ignore[misc]


async def test_a_first_read_under_the_shipped_policies_gets_the_documented_headers(
    tmp_path: Path,
) -> None:
    expected = documented_headers()
    settings = Settings(data_dir=tmp_path, internal_token=TOKEN)  # the shipped policy file
    async with limited_server(settings) as (_, channel):
        headers = await reply_headers(await balance(channel, wallet=new_wallet_address()))

    assert len(expected) == 2
    assert {name: headers[name] for name in expected} == expected


async def test_the_redis_backend_without_a_redis_url_stops_the_service(tmp_path: Path) -> None:
    settings = limited_settings(tmp_path, ratelimit_backend="redis", ports={"credits": 0})

    with pytest.raises(ValueError, match="ratelimit_backend is redis but redis_url is not set"):
        await create_limited_server(settings)
