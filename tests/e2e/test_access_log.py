"""Envoy's access log says the status each client received, for the gateway's own refusals too."""

from __future__ import annotations

import re
import time

import httpx

from gateway.local_stack import LocalStack

LOG_WAIT_SECONDS = 5.0  # Envoy flushes its log every second


def access_log_line(stack: LocalStack, request_id: str) -> str:
    deadline = time.monotonic() + LOG_WAIT_SECONDS
    while True:
        found = [line for line in stack.log_of("envoy").splitlines() if f"id={request_id}" in line]
        if found or time.monotonic() > deadline:
            assert len(found) == 1, f"no access log line for {request_id}"
            return found[0]
        time.sleep(0.2)


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
