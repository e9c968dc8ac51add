"""Calls that never send a complete message end at the gateway within its request timeout, and
while they are open, everyone else is still served."""

from __future__ import annotations

import json

import grpc
import httpx

from gateway.limits import REQUEST_TIMEOUT_SECONDS
from runner.local_stack import LocalStack
from services.core.testing import new_wallet_address
from tests.e2e.raw import (
    RawCalls,
    incomplete_http1_post,
    read_http1_reply,
    truncated_grpc_frame,
)

CALLS_PER_CONNECTION = 100  # the most one HTTP/2 connection may run at once
# Time for Envoy's timer to fire and the replies to arrive, on a busy 2-core machine.
SLACK_SECONDS = 3.0


def test_incomplete_calls_end_within_the_request_timeout_while_others_are_served(
    stack: LocalStack,
) -> None:
    kinds = [
        ("application/grpc", b""),  # headers, then nothing
        ("application/grpc", truncated_grpc_frame()),
        ("application/grpc-web+proto", truncated_grpc_frame()),
    ]
    held = [
        RawCalls.open(stack.ports.gateway, CALLS_PER_CONNECTION, content_type, body)
        for content_type, body in kinds
    ]
    rest = incomplete_http1_post(stack.ports.gateway, "/v1/users", 100, b'{"wallet_address": ')
    try:
        normal = httpx.get(f"{stack.rest_url}/v1/users/{new_wallet_address()}", timeout=5)

        for calls in held:
            calls.wait_until_all_ended(REQUEST_TIMEOUT_SECONDS + SLACK_SECONDS)
        rest_reply = read_http1_reply(rest, SLACK_SECONDS)
    finally:
        rest.close()
        for calls in held:
            calls.close()

    assert normal.status_code == 404, normal.text
    assert normal.json()["code"] == 5
    deadline_exceeded = str(grpc.StatusCode.DEADLINE_EXCEEDED.value[0])
    for calls in held:
        assert len(calls.ended) == CALLS_PER_CONNECTION
        statuses = {response.get("grpc-status") for response in calls.responses.values()}
        assert statuses == {deadline_exceeded}
        assert len(calls.responses) == CALLS_PER_CONNECTION
    assert rest_reply.status == 408
    assert rest_reply.headers["content-type"] == "application/json"
    assert json.loads(rest_reply.body)["code"] == 4  # DEADLINE_EXCEEDED
