"""Calls whose body is complete but is not one whole gRPC message, and headers gRPC cannot parse:
the gateway answers them itself, at once, with INVALID_ARGUMENT (400 and a google.rpc.Status for
REST and other non-gRPC callers), and nothing of them reaches a service or its log."""

from __future__ import annotations

import base64
import gzip
import json
import struct

import grpc
import httpx
import pytest
from r3mes.users.v1 import users_pb2

from runner.local_stack import LocalStack
from services.core.testing import new_wallet_address
from tests.e2e.raw import GRPC_PATH, RawCalls, http1_request, truncated_grpc_frame
from tests.e2e.test_grpc_clients import grpc_web_frame, parse_grpc_web

INVALID_ARGUMENT = str(grpc.StatusCode.INVALID_ARGUMENT.value[0])
NOT_FOUND = str(grpc.StatusCode.NOT_FOUND.value[0])
# Far less than the route timeout (15 s) a held call used to wait for: a reply within this is
# the gateway's own.
REPLY_WAIT_SECONDS = 10.0
# More than the 512 calls a service may have in flight through the gateway.
FLOOD_CONNECTIONS = 6
CALLS_PER_CONNECTION = 100

NO_MESSAGE = "the call carries no complete gRPC message"
SHORT_MESSAGE = "the gRPC message is shorter than its length prefix says"
ONE_MESSAGE = "a unary call carries exactly one gRPC message"
WRONG_FLAG = "the gRPC message's compressed flag does not match its grpc-encoding"


def get_user_message() -> bytes:
    return users_pb2.GetUserRequest(wallet_address=new_wallet_address()).SerializeToString()


BODIES = {
    "an empty body": (b"", NO_MESSAGE),
    "a frame header alone": (b"\0\0\0\0\x96", SHORT_MESSAGE),
    "three bytes": (b"\0\0\0", NO_MESSAGE),
    "a truncated frame": (truncated_grpc_frame(), SHORT_MESSAGE),
    "two messages": (grpc_web_frame(get_user_message()) * 2, ONE_MESSAGE),
    "a compressed flag without an encoding": (b"\x01" + grpc_web_frame(b"")[1:], WRONG_FLAG),
    "an unknown flag": (b"\x02" + grpc_web_frame(b"")[1:], WRONG_FLAG),
}


@pytest.mark.parametrize("body", BODIES, ids=list(BODIES))
def test_a_grpc_call_without_one_whole_message_is_invalid_argument_at_once(
    stack: LocalStack, body: str
) -> None:
    sent, message = BODIES[body]
    calls = RawCalls.open(stack.ports.gateway, 1, "application/grpc", sent, complete=True)
    try:
        calls.wait_until_all_ended(REPLY_WAIT_SECONDS)
    finally:
        calls.close()

    assert calls.statuses() == [INVALID_ARGUMENT]
    reply = calls.responses[calls.streams[0]]
    assert reply[":status"] == "200"
    assert reply["grpc-message"] == message


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/grpc-web+proto", b""),
        ("application/grpc-web+proto", b"\0\0\0\0\x96"),
        ("application/grpc-web", truncated_grpc_frame()),
        ("application/grpc-web-text", base64.b64encode(b"\0\0\0\0\x96")),
    ],
)
def test_a_grpc_web_call_without_one_whole_message_is_invalid_argument_at_once(
    stack: LocalStack, content_type: str, body: bytes
) -> None:
    with httpx.Client(base_url=stack.rest_url, timeout=REPLY_WAIT_SECONDS) as client:
        reply = client.post(
            GRPC_PATH, content=body, headers={"content-type": content_type, "x-grpc-web": "1"}
        )

    assert reply.status_code == 200
    assert reply.headers["grpc-status"] == INVALID_ARGUMENT
    assert reply.headers["grpc-message"] in (NO_MESSAGE, SHORT_MESSAGE)


def test_hundreds_of_empty_calls_from_one_client_leave_the_service_to_everyone_else(
    stack: LocalStack,
) -> None:
    flood = [
        RawCalls.open(
            stack.ports.gateway, CALLS_PER_CONNECTION, "application/grpc", b"", complete=True
        )
        for _ in range(FLOOD_CONNECTIONS)
    ]
    try:
        other = httpx.get(f"{stack.rest_url}/v1/users/{new_wallet_address()}", timeout=5)
        for calls in flood:
            calls.wait_until_all_ended(REPLY_WAIT_SECONDS)
    finally:
        for calls in flood:
            calls.close()

    assert other.status_code == 404, other.text
    assert other.json()["details"][0]["reason"] == "USER_NOT_FOUND"
    for calls in flood:
        assert calls.statuses() == [INVALID_ARGUMENT] * CALLS_PER_CONNECTION


REFUSED_HEADERS = {
    "grpc-timeout: garbage": ("grpc-timeout", "garbage"),
    "grpc-timeout: -1S": ("grpc-timeout", "-1S"),
    "grpc-timeout: 123456789S": ("grpc-timeout", "123456789S"),
    "grpc-encoding: snappy": ("grpc-encoding", "snappy"),
    "x-foo-bin: !!!": ("x-foo-bin", "!!!"),
    "grpc-status-details-bin: !!!": ("grpc-status-details-bin", "!!!"),
    "grpc-previous-rpc-attempts: x": ("grpc-previous-rpc-attempts", "x"),
    "grpc-status: x": ("grpc-status", "x"),
    "grpc-retry-pushback-ms: x": ("grpc-retry-pushback-ms", "x"),
    "lb-cost-bin: AAAA": ("lb-cost-bin", "AAAA"),
}
# Values gRPC accepts: they still reach the service, also after the refusals above.
ACCEPTED_HEADERS = [
    ("grpc-timeout", "99999999n"),
    ("grpc-timeout", "1S"),
    ("grpc-encoding", "gzip"),
    ("x-foo-bin", "AAA"),
    ("x-foo-bin", "AAA="),
    ("grpc-status", "1"),
    ("lb-cost-bin", "A" * 28),
]


@pytest.mark.parametrize("header", REFUSED_HEADERS, ids=list(REFUSED_HEADERS))
def test_a_rest_call_with_a_header_grpc_cannot_parse_is_a_400_naming_it(
    stack: LocalStack, header: str
) -> None:
    name, value = REFUSED_HEADERS[header]

    reply = http1_request(
        stack.ports.gateway, "GET", f"/v1/users/{new_wallet_address()}", [(name, value)]
    )

    assert reply.status == 400, reply.body
    assert reply.headers["content-type"] == "application/json"
    status = json.loads(reply.body)
    assert status["code"] == 3
    assert status["message"].startswith(f"header {name} must be ")
    assert status["details"] == []


@pytest.mark.parametrize("header", REFUSED_HEADERS, ids=list(REFUSED_HEADERS))
def test_a_grpc_call_with_a_header_grpc_cannot_parse_is_invalid_argument(
    stack: LocalStack, header: str
) -> None:
    name, value = REFUSED_HEADERS[header]
    body = grpc_web_frame(get_user_message())
    calls = RawCalls.open(
        stack.ports.gateway, 1, "application/grpc", body, complete=True, headers=[(name, value)]
    )
    try:
        calls.wait_until_all_ended(REPLY_WAIT_SECONDS)
    finally:
        calls.close()

    assert calls.statuses() == [INVALID_ARGUMENT]
    assert calls.responses[calls.streams[0]]["grpc-message"].startswith(f"header {name} must be ")


def test_headers_grpc_accepts_still_reach_the_service_and_its_log_has_no_parse_errors(
    stack: LocalStack,
) -> None:
    for name, value in REFUSED_HEADERS.values():
        http1_request(
            stack.ports.gateway, "GET", f"/v1/users/{new_wallet_address()}", [(name, value)]
        )

    replies = [
        http1_request(stack.ports.gateway, "GET", f"/v1/users/{new_wallet_address()}", [header])
        for header in ACCEPTED_HEADERS
    ]

    assert [reply.status for reply in replies] == [404] * len(ACCEPTED_HEADERS)
    assert {json.loads(r.body)["details"][0]["reason"] for r in replies} == {"USER_NOT_FOUND"}
    assert "Error parsing" not in stack.log_of("users")


@pytest.mark.parametrize(
    "content_type",
    [
        "application/grpc-web+json",
        "application/grpc-web+foo",
        "application/grpc-web-text+json",
        "application/json",
        "text/plain",
    ],
)
def test_a_grpc_path_called_with_a_content_type_no_service_speaks_is_a_415_status(
    stack: LocalStack, content_type: str
) -> None:
    reply = http1_request(
        stack.ports.gateway,
        "POST",
        GRPC_PATH,
        [("content-type", content_type), ("x-grpc-web", "1")],
        grpc_web_frame(get_user_message()),
    )

    assert reply.status == 415, reply.body
    assert reply.headers["content-type"] == "application/json"
    status = json.loads(reply.body)
    assert status["code"] == 3
    assert "application/grpc" in status["message"]


def test_a_grpc_call_asking_for_json_messages_is_invalid_argument(stack: LocalStack) -> None:
    body = grpc_web_frame(b'{"wallet_address": "x"}')
    calls = RawCalls.open(stack.ports.gateway, 1, "application/grpc+json", body, complete=True)
    try:
        calls.wait_until_all_ended(REPLY_WAIT_SECONDS)
    finally:
        calls.close()

    assert calls.statuses() == [INVALID_ARGUMENT]
    assert "application/grpc" in calls.responses[calls.streams[0]]["grpc-message"]


def test_a_well_formed_grpc_web_call_still_reaches_the_service(stack: LocalStack) -> None:
    reply = http1_request(
        stack.ports.gateway,
        "POST",
        GRPC_PATH,
        [("content-type", "application/grpc-web+proto"), ("x-grpc-web", "1")],
        grpc_web_frame(get_user_message()),
    )

    _, trailers = parse_grpc_web(reply.body)
    assert (trailers.get("grpc-status") or reply.headers["grpc-status"]) == NOT_FOUND


def test_a_compressed_grpc_message_with_its_encoding_reaches_the_service(
    stack: LocalStack,
) -> None:
    packed = gzip.compress(get_user_message())
    body = struct.pack(">BI", 1, len(packed)) + packed
    calls = RawCalls.open(
        stack.ports.gateway,
        1,
        "application/grpc",
        body,
        complete=True,
        headers=[("grpc-encoding", "gzip")],
    )
    try:
        calls.wait_until_all_ended(REPLY_WAIT_SECONDS)
    finally:
        calls.close()

    assert calls.statuses() == [NOT_FOUND]
