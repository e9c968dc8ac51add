"""Request headers at the gateway: names gRPC cannot carry, sizes over the limit, and what the
replies say about the gateway itself."""

from __future__ import annotations

import json

import grpc
import httpx
import pytest
from r3mes.users.v1 import users_pb2

from gateway.limits import MAX_REQUEST_HEADERS_KB
from runner.local_stack import LocalStack
from services.core.testing import new_wallet_address
from tests.e2e.raw import GRPC_PATH, http1_request
from tests.e2e.test_grpc_clients import grpc_web_frame, parse_grpc_web

# Valid HTTP header names (RFC 9110 tokens) that are not valid gRPC metadata keys.
NOT_GRPC_NAMES = ("a!b", "%D9J", "x~y", "acc'ount")
LIMIT_BYTES = MAX_REQUEST_HEADERS_KB * 1024
TRIES = 8  # gRPC's own limit refused at random between 8 and 16 KiB: try often enough


@pytest.mark.parametrize("name", NOT_GRPC_NAMES)
def test_a_rest_call_with_a_header_grpc_cannot_carry_still_reaches_the_service(
    stack: LocalStack, name: str
) -> None:
    reply = http1_request(
        stack.ports.gateway, "GET", f"/v1/users/{new_wallet_address()}", [(name, "1")]
    )

    assert reply.status == 404, reply.body
    assert reply.headers["content-type"] == "application/json"
    status = json.loads(reply.body)
    assert status["code"] == 5
    assert status["details"][0]["reason"] == "USER_NOT_FOUND"


def test_a_grpc_web_call_with_a_header_grpc_cannot_carry_still_reaches_the_service(
    stack: LocalStack,
) -> None:
    request = users_pb2.GetUserRequest(wallet_address=new_wallet_address()).SerializeToString()

    reply = http1_request(
        stack.ports.gateway,
        "POST",
        GRPC_PATH,
        [("content-type", "application/grpc-web+proto"), ("x-grpc-web", "1"), ("a!b", "1")],
        grpc_web_frame(request),
    )

    _, trailers = parse_grpc_web(reply.body)
    status = trailers.get("grpc-status") or reply.headers["grpc-status"]
    assert status == str(grpc.StatusCode.NOT_FOUND.value[0])


def test_headers_just_under_the_limit_reach_the_service_every_time(stack: LocalStack) -> None:
    headers = {"x-padding": "p" * (LIMIT_BYTES - 1024)}
    with httpx.Client(base_url=stack.rest_url, timeout=10) as client:
        replies = [
            client.get(f"/v1/users/{new_wallet_address()}", headers=headers) for _ in range(TRIES)
        ]

    assert [r.status_code for r in replies] == [404] * TRIES
    assert {r.json()["details"][0]["reason"] for r in replies} == {"USER_NOT_FOUND"}


@pytest.mark.parametrize("size", [LIMIT_BYTES, LIMIT_BYTES + 4096, 40 * 1024])
def test_headers_over_the_limit_are_refused_with_431_every_time(
    stack: LocalStack, size: int
) -> None:
    headers = {"x-padding": "p" * size}
    with httpx.Client(base_url=stack.rest_url, timeout=10) as client:
        replies = [
            client.get(f"/v1/users/{new_wallet_address()}", headers=headers) for _ in range(TRIES)
        ]

    assert {r.status_code for r in replies} == {431}
    for reply in replies:
        assert reply.headers["content-type"] == "application/json"
        # Nothing about what lies behind the gateway: no header names, no sizes.
        assert reply.json() == {
            "code": 8,
            "message": "Request Header Fields Too Large",
            "details": [],
        }


@pytest.mark.parametrize("path", ["/v1/network/stats", "/v1/no-such-thing"])
def test_replies_do_not_name_the_proxy_or_time_the_service(stack: LocalStack, path: str) -> None:
    reply = httpx.get(f"{stack.rest_url}{path}", timeout=10)

    assert reply.status_code in (200, 404)
    assert "server" not in reply.headers
    assert not [name for name in reply.headers if name.startswith("x-envoy")]
