# mypy: disable-error-code="abstract"
# (the stubs mark every RPC abstract; the test's credits servicer implements only those it calls)
"""The interceptor chain as a caller meets it, through real servers and channels.

A probe service (`test.Probe`, outside r3mes, so no access rule applies) exercises request context
and error mapping; the credits API, served by handlers of the test's own behind the real server
stack, exercises the internal token and the access rules apart from what credits does.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from google.protobuf.message import Message
from pydantic import SecretStr
from r3mes.credits.v1 import credits_pb2, credits_pb2_grpc

from services.core.interceptors import RequestChain
from services.core.lifecycle import ServiceServer, build_server, registration
from services.core.logging import JsonFormatter
from services.core.settings import Settings
from services.core.testing import new_wallet_address, running_server
from services.core.validators import new_api_key
from tests.integration.rpc import failure_of

TOKEN = "chain-test-internal-token"
INTERNAL = (("x-r3mes-internal-token", TOKEN),)
SECRET_DETAIL = "password=hunter2 host=db.internal table=users.users"
SLOW_SECONDS = 3.0
GRANT = credits_pb2.GrantCreditsRequest(
    wallet_address=new_wallet_address(), amount_micro_credits=5, idempotency_key="grant-1"
)

Unary = grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]


class Probe:
    """The probe service's handlers, and which of them actually ran."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def handler(self) -> grpc.GenericRpcHandler:
        async def echo(request: bytes, context: Any) -> bytes:
            self.ran.append("Echo")
            return request

        async def fail(request: bytes, context: Any) -> bytes:
            self.ran.append("Fail")
            raise RuntimeError(SECRET_DETAIL)

        async def slow(request: bytes, context: Any) -> bytes:
            self.ran.append("Slow")
            await asyncio.sleep(SLOW_SECONDS)
            return request

        methods = {"Echo": echo, "Fail": fail, "Slow": slow}
        handlers: dict[str, grpc.RpcMethodHandler[bytes, bytes]] = {
            name: grpc.unary_unary_rpc_method_handler(method) for name, method in methods.items()
        }
        return grpc.method_handlers_generic_handler("test.Probe", handlers)


def _request_id(metadata: grpc.aio.Metadata | None) -> str:
    assert metadata is not None
    value = dict(metadata)["x-request-id"]
    assert isinstance(value, str)
    return value


def _method(channel: grpc.aio.Channel, name: str) -> Unary:
    return cast("Unary", channel.unary_unary(f"/test.Probe/{name}"))


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
async def channel(probe: Probe, tmp_path: Path) -> AsyncIterator[grpc.aio.Channel]:
    async def create(settings: Settings) -> tuple[ServiceServer, int]:
        register = (
            lambda server: server.add_generic_rpc_handlers((probe.handler(),)),
            "test.Probe",
        )
        return build_server(settings, "users", [register])

    settings = Settings(data_dir=tmp_path, internal_token=SecretStr(TOKEN))
    async with running_server(create, settings, "users") as (_, channel):
        yield channel


class AdmittingCredits(credits_pb2_grpc.CreditsServiceServicer):
    """The credits API with handlers of the test's own, which answer an empty response and
    note that they ran: what these tests check is who gets through the chain, apart from what
    the real credits service does with a call."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    async def GrantCredits(
        self, request: credits_pb2.GrantCreditsRequest, context: Any
    ) -> credits_pb2.GrantCreditsResponse:
        self.ran.append("GrantCredits")
        return credits_pb2.GrantCreditsResponse()

    async def GetCreditsTotal(
        self, request: credits_pb2.GetCreditsTotalRequest, context: Any
    ) -> credits_pb2.GetCreditsTotalResponse:
        self.ran.append("GetCreditsTotal")
        return credits_pb2.GetCreditsTotalResponse()

    async def ListLedgerEntries(
        self, request: credits_pb2.ListLedgerEntriesRequest, context: Any
    ) -> credits_pb2.ListLedgerEntriesResponse:
        self.ran.append("ListLedgerEntries")
        return credits_pb2.ListLedgerEntriesResponse()


@pytest.fixture
def admitting() -> AdmittingCredits:
    return AdmittingCredits()


def _credits_on_our_stack(servicer: AdmittingCredits) -> Callable[..., Any]:
    async def create(settings: Settings) -> tuple[ServiceServer, int]:
        service = credits_pb2.DESCRIPTOR.services_by_name["CreditsService"]
        add = credits_pb2_grpc.add_CreditsServiceServicer_to_server
        return build_server(settings, "credits", [registration(add, servicer, service)])

    return create


@pytest.fixture
async def credits(
    admitting: AdmittingCredits, tmp_path: Path
) -> AsyncIterator[credits_pb2_grpc.CreditsServiceAsyncStub]:
    settings = Settings(data_dir=tmp_path, internal_token=SecretStr(TOKEN))
    async with running_server(_credits_on_our_stack(admitting), settings, "credits") as (_, ch):
        yield credits_pb2_grpc.CreditsServiceStub(ch)


# --- error mapping --------------------------------------------------------------------------------


async def test_an_unexpected_exception_is_internal_with_an_incident_id_and_no_detail(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _method(channel, "Fail")(b"")

    failure = failure_of(raised.value)
    assert (failure.code, failure.reason) == (grpc.StatusCode.INTERNAL, "INTERNAL")
    assert failure.domain == "users.r3mes.network"
    match = re.fullmatch(r"internal error \(incident ([0-9a-f]{32})\)", failure.message)
    assert match is not None, failure.message
    for leak in ("hunter2", "db.internal", "RuntimeError", "Traceback"):
        assert leak not in str(raised.value.trailing_metadata())
        assert leak not in (raised.value.details() or "")
    # The operator finds the whole story in the log, under the incident id the caller quotes.
    [logged] = [r for r in caplog.records if getattr(r, "incident_id", None) == match[1]]
    assert logged.exc_info is not None
    assert str(logged.exc_info[1]) == SECRET_DETAIL
    assert getattr(logged, "method", None) == "/test.Probe/Fail"


# --- request context ------------------------------------------------------------------------------


async def test_the_request_id_sent_by_the_caller_comes_back_in_the_trailing_metadata(
    channel: grpc.aio.Channel,
) -> None:
    answered = _method(channel, "Echo")(b"", metadata=(("x-request-id", "trace-42"),))
    failed = _method(channel, "Fail")(b"", metadata=(("x-request-id", "trace-43"),))
    await answered
    with pytest.raises(grpc.aio.AioRpcError):
        await failed

    assert _request_id(await answered.trailing_metadata()) == "trace-42"
    assert _request_id(await failed.trailing_metadata()) == "trace-43"


async def test_a_fresh_request_id_is_made_when_none_is_sent_or_it_is_unusable(
    channel: grpc.aio.Channel,
) -> None:
    seen = []
    holding_a_key = f"trace {new_api_key()}"  # a caller's mistake: keys are never logged
    for metadata in [(), (("x-request-id", "x" * 129),), (("x-request-id", holding_a_key),), ()]:
        call = _method(channel, "Echo")(b"", metadata=metadata)
        await call
        seen.append(_request_id(await call.trailing_metadata()))

    assert all(re.fullmatch(r"[0-9a-f]{32}", request_id) for request_id in seen), seen
    assert len(set(seen)) == 4


async def test_each_call_is_one_access_log_line_with_method_code_duration_and_request_id(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    access_log = logging.getLogger("r3mes.access")
    access_log.addHandler(handler)
    caplog.set_level(logging.INFO, logger="r3mes.access")
    try:
        await _method(channel, "Echo")(b"", metadata=(("x-request-id", "ok-call"),))
        with pytest.raises(grpc.aio.AioRpcError):
            await _method(channel, "Fail")(b"", metadata=(("x-request-id", "failed-call"),))
    finally:
        access_log.removeHandler(handler)

    entries = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert [(e["method"], e["code"], e["request_id"]) for e in entries] == [
        ("/test.Probe/Echo", "OK", "ok-call"),
        ("/test.Probe/Fail", "INTERNAL", "failed-call"),
    ]
    for entry in entries:
        assert entry["logger"] == "r3mes.access"
        assert isinstance(entry["duration_ms"], float)
        assert 0 <= entry["duration_ms"] < 5000


# --- deadlines ------------------------------------------------------------------------------------


async def test_the_access_log_records_a_timed_out_call_as_deadline_exceeded(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="r3mes.access")
    with pytest.raises(grpc.aio.AioRpcError):
        await _method(channel, "Slow")(b"", timeout=0.2)

    for _ in range(50):
        logged = [r for r in caplog.records if getattr(r, "method", "") == "/test.Probe/Slow"]
        if logged:
            break
        await asyncio.sleep(0.05)
    assert [getattr(r, "code", None) for r in logged] == ["DEADLINE_EXCEEDED"]


class StallingInterceptor(grpc.aio.ServerInterceptor):
    """Holds the event loop past the caller's deadline, as an overloaded server would."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        time.sleep(0.3)  # noqa: ASYNC251 (blocking on purpose)
        return await continuation(handler_call_details)


async def test_a_call_whose_deadline_passed_before_it_was_handled_runs_no_handler(
    probe: Probe,
) -> None:
    server = grpc.aio.server(
        interceptors=[StallingInterceptor(), RequestChain("users.r3mes.network", [])]
    )
    server.add_generic_rpc_handlers((probe.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await _method(channel, "Echo")(b"", timeout=0.1)
            await asyncio.sleep(0.1)
    finally:
        await server.stop(grace=None)

    assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert probe.ran == []


# --- the internal token and access rules ----------------------------------------------------------


@pytest.mark.parametrize("offered", ["wrong-token", TOKEN + "x", TOKEN[:-1], ""])
async def test_a_wrong_internal_token_is_unauthenticated_even_for_a_public_rpc(
    credits: credits_pb2_grpc.CreditsServiceAsyncStub, offered: str
) -> None:
    metadata = (("x-r3mes-internal-token", offered),)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await credits.GetCreditsTotal(credits_pb2.GetCreditsTotalRequest(), metadata=metadata)

    failure = failure_of(raised.value)
    assert (failure.code, failure.reason) == (grpc.StatusCode.UNAUTHENTICATED, "BAD_INTERNAL_TOKEN")
    assert failure.domain == "credits.r3mes.network"
    if offered:
        assert offered not in failure.message
    assert TOKEN not in str(raised.value.trailing_metadata())


ADMITTED = (grpc.StatusCode.OK, "")
CREDENTIALS_MISSING = (grpc.StatusCode.UNAUTHENTICATED, "CREDENTIALS_MISSING")
INTERNAL_ONLY = (grpc.StatusCode.PERMISSION_DENIED, "INTERNAL_ONLY")
INVALID = (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
TOTAL = credits_pb2.GetCreditsTotalRequest()
LEDGER = credits_pb2.ListLedgerEntriesRequest(wallet_address=new_wallet_address())
BAD_GRANT = credits_pb2.GrantCreditsRequest(
    wallet_address="remes1bad", amount_micro_credits=5, idempotency_key="k"
)


@pytest.mark.parametrize(
    ("rpc", "request_message", "internal", "outcome"),
    [
        pytest.param("GrantCredits", GRANT, True, ADMITTED, id="internal-rpc-internal"),
        # No API key opens an internal RPC: the anonymous caller is told it is internal.
        pytest.param("GrantCredits", GRANT, False, INTERNAL_ONLY, id="internal-rpc-anon"),
        pytest.param("GetCreditsTotal", TOTAL, False, ADMITTED, id="public-rpc-anon"),
        pytest.param("ListLedgerEntries", LEDGER, False, CREDENTIALS_MISSING, id="own-wallet-anon"),
        pytest.param("ListLedgerEntries", LEDGER, True, ADMITTED, id="own-wallet-internal"),
        # Validation runs before authorization: a malformed wallet is a 400, not a 401 or 403.
        pytest.param("GrantCredits", BAD_GRANT, False, INVALID, id="malformed-anon"),
    ],
)
async def test_each_rpc_admits_the_callers_its_access_rule_names(
    credits: credits_pb2_grpc.CreditsServiceAsyncStub,
    admitting: AdmittingCredits,
    rpc: str,
    request_message: Message,
    internal: bool,
    outcome: tuple[grpc.StatusCode, str],
) -> None:
    call: Callable[..., Awaitable[Message]] = getattr(credits, rpc)
    try:
        await call(request_message, metadata=INTERNAL if internal else ())
    except grpc.aio.AioRpcError as error:
        failure = failure_of(error)
        assert (failure.code, failure.reason) == outcome
        if failure.code is grpc.StatusCode.INVALID_ARGUMENT:
            assert list(failure.bad_fields) == ["wallet_address"]
        assert admitting.ran == [], "a refused call runs no handler"
    else:
        assert outcome == ADMITTED
        assert admitting.ran == [rpc]


async def test_a_server_without_a_configured_token_refuses_every_offered_token(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path)
    create = _credits_on_our_stack(AdmittingCredits())
    async with running_server(create, settings, "credits") as (_, channel):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await credits_pb2_grpc.CreditsServiceStub(channel).GrantCredits(
                GRANT, metadata=INTERNAL
            )

    assert failure_of(raised.value).reason == "BAD_INTERNAL_TOKEN"
