"""Envoy's access log says the status each client received, through every door (REST, gRPC,
gRPC-Web), for the gateway's own refusals too."""

from __future__ import annotations

import json
import re
import time

import grpc
import httpx
import pytest
from r3mes.users.v1 import users_pb2, users_pb2_grpc

from gateway.limits import REQUEST_TIMEOUT_SECONDS
from runner.local_stack import LocalStack
from services.core.testing import new_wallet_address
from services.core.tls import client_context
from tests.e2e.conftest import MAX_REQUEST_BYTES
from tests.e2e.raw import GRPC_PATH, incomplete_http1_post, read_http1_reply
from tests.e2e.test_grpc_clients import grpc_web_frame, parse_grpc_web

LOG_WAIT_SECONDS = 5.0  # Envoy flushes its log every second
# Of calls sent with an already-passed deadline, about one in five was logged UNAVAILABLE.
DEADLINE_TRIES = 20


def access_log_line(stack: LocalStack, request_id: str) -> str:
    """Envoy's line for the request, text or JSON."""
    deadline = time.monotonic() + LOG_WAIT_SECONDS
    while True:
        found = [line for line in stack.log_of("envoy").splitlines() if request_id in line]
        if found or time.monotonic() > deadline:
            assert len(found) == 1, f"no access log line for {request_id}"
            return found[0]
        time.sleep(0.2)


def json_access_log_entry(stack: LocalStack, request_id: str) -> dict[str, object]:
    entry: dict[str, object] = json.loads(access_log_line(stack, request_id))
    return entry


def logged_grpc_status(line: str) -> str:
    match = re.search(r" grpc=(\S+) ", line)
    assert match, line
    return match.group(1)


async def test_a_json_refusal_by_the_gateway_is_logged_with_the_code_the_client_got(
    rest: httpx.AsyncClient, stack: LocalStack
) -> None:
    reply = await rest.post(
        "/v1/users", content=b'{"wallet_address": ', headers={"content-type": "application/json"}
    )

    assert reply.status_code == 400
    assert reply.json()["code"] == 3
    line = access_log_line(stack, reply.headers["x-request-id"])
    assert " -> 400 " in line
    assert logged_grpc_status(line) == "3"  # INVALID_ARGUMENT, not INTERNAL


async def test_a_service_error_is_logged_with_its_own_code(
    rest: httpx.AsyncClient, stack: LocalStack
) -> None:
    reply = await rest.post("/v1/users", json={"wallet_address": "remes1notawallet"})

    assert reply.json()["code"] == 3
    assert logged_grpc_status(access_log_line(stack, reply.headers["x-request-id"])) == "3"


def grpc_web_call(stack: LocalStack, request: bytes, path: str = GRPC_PATH) -> httpx.Response:
    return httpx.post(
        f"{stack.rest_url}{path}",
        content=grpc_web_frame(request),
        headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1"},
        timeout=10,
        verify=client_context(),
    )


def grpc_web_status(reply: httpx.Response) -> str:
    """In the trailer frame of the body, or in the headers of a trailers-only reply."""
    _, trailers = parse_grpc_web(reply.content)
    return trailers.get("grpc-status") or reply.headers["grpc-status"]


@pytest.fixture(scope="module")
def known_wallet(stack: LocalStack) -> str:
    wallet = new_wallet_address()
    created = httpx.post(
        f"{stack.rest_url}/v1/users",
        json={"wallet_address": wallet},
        timeout=10,
        verify=client_context(),
    )
    assert created.status_code == 200, created.text
    return wallet


@pytest.mark.parametrize("known", [True, False], ids=["ok", "not found"])
def test_a_grpc_web_call_is_logged_with_the_code_in_its_trailer_frame(
    stack: LocalStack, known_wallet: str, known: bool
) -> None:
    wallet = known_wallet if known else new_wallet_address()
    request = users_pb2.GetUserRequest(wallet_address=wallet).SerializeToString()

    reply = grpc_web_call(stack, request)

    received = grpc_web_status(reply)
    assert received == ("0" if known else "5")
    assert logged_grpc_status(access_log_line(stack, reply.headers["x-request-id"])) == received


@pytest.mark.parametrize("known", [True, False], ids=["ok", "not found"])
def test_a_grpc_call_is_logged_with_the_code_in_its_trailers(
    stack: LocalStack, known_wallet: str, known: bool
) -> None:
    wallet = known_wallet if known else new_wallet_address()
    with grpc.insecure_channel(stack.gateway_target) as channel:
        users = users_pb2_grpc.UsersServiceStub(channel)
        call = users.GetUser.future(users_pb2.GetUserRequest(wallet_address=wallet), timeout=10)
        received = call.code()
        request_id = dict(call.trailing_metadata() or ())["x-request-id"]

    assert received == (grpc.StatusCode.OK if known else grpc.StatusCode.NOT_FOUND)
    line = access_log_line(stack, str(request_id))
    assert logged_grpc_status(line) == str(received.value[0])


@pytest.mark.parametrize("known", [True, False], ids=["ok", "not found"])
def test_a_rest_call_is_logged_with_the_code_in_its_body(
    stack: LocalStack, known_wallet: str, known: bool
) -> None:
    wallet = known_wallet if known else new_wallet_address()

    reply = httpx.get(f"{stack.rest_url}/v1/users/{wallet}", timeout=10, verify=client_context())

    received = "0" if reply.status_code == 200 else str(reply.json()["code"])
    assert received == ("0" if known else "5")
    assert logged_grpc_status(access_log_line(stack, reply.headers["x-request-id"])) == received


def test_a_grpc_web_call_refused_by_the_gateway_is_logged_with_the_code_it_got(
    stack: LocalStack,
) -> None:
    reply = grpc_web_call(stack, b"\x0a" * (MAX_REQUEST_BYTES + 1))

    assert grpc_web_status(reply) == "8"  # RESOURCE_EXHAUSTED, in a trailers-only reply
    assert logged_grpc_status(access_log_line(stack, reply.headers["x-request-id"])) == "8"


def test_a_grpc_web_call_of_an_unknown_service_is_unimplemented_and_logged_so(
    stack: LocalStack,
) -> None:
    reply = grpc_web_call(stack, b"", path="/r3mes.nosuch.v1.NoSuchService/Method")

    assert grpc_web_status(reply) == "12"  # UNIMPLEMENTED, not a bare 404
    assert logged_grpc_status(access_log_line(stack, reply.headers["x-request-id"])) == "12"


def test_rest_calls_sent_with_a_passed_deadline_are_each_logged_with_the_code_they_got(
    stack: LocalStack,
) -> None:
    # grpc refuses most such calls itself, some in a trailers-only reply that the transcoder
    # turns into the JSON body; others reach the service's own check, which answers in
    # trailers; a few are answered before their deadline is noticed.
    with httpx.Client(base_url=stack.rest_url, timeout=10, verify=client_context()) as client:
        replies = [
            client.get(f"/v1/users/{new_wallet_address()}", headers={"grpc-timeout": "1n"})
            for _ in range(DEADLINE_TRIES)
        ]

    received = [str(reply.json()["code"]) for reply in replies]
    logged = [
        logged_grpc_status(access_log_line(stack, reply.headers["x-request-id"]))
        for reply in replies
    ]
    assert "4" in received
    assert logged == received


def test_a_rest_call_whose_body_never_arrives_is_logged_deadline_exceeded(
    stack: LocalStack,
) -> None:
    sock = incomplete_http1_post(stack.ports.gateway, "/v1/users", 100, b'{"wallet_address": ')
    try:
        reply = read_http1_reply(sock, REQUEST_TIMEOUT_SECONDS + LOG_WAIT_SECONDS)
    finally:
        sock.close()

    assert reply.status == 408
    assert json.loads(reply.body)["code"] == 4
    assert logged_grpc_status(access_log_line(stack, reply.headers["x-request-id"])) == "4"


def test_json_log_lines_carry_the_grpc_code_a_grpc_web_client_received(
    json_logging_stack: LocalStack,
) -> None:
    request = users_pb2.GetUserRequest(wallet_address=new_wallet_address()).SerializeToString()

    reply = grpc_web_call(json_logging_stack, request)

    assert grpc_web_status(reply) == "5"
    entry = json_access_log_entry(json_logging_stack, reply.headers["x-request-id"])
    assert entry["grpc_status"] == "5"


async def test_a_refusal_by_the_front_door_is_logged_with_the_code_in_its_body(
    rest: httpx.AsyncClient, stack: LocalStack
) -> None:
    reply = await rest.get("/docs/no-such-file")

    assert reply.status_code == 404
    assert reply.json()["code"] == 5
    assert logged_grpc_status(access_log_line(stack, reply.headers["x-request-id"])) == "5"
