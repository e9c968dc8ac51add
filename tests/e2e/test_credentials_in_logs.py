"""An API key sent anywhere but in its headers never reaches a log: a URL holding one is refused
with a message that says where keys go, and the log lines show REDACTED in its place."""

from __future__ import annotations

from typing import cast

import grpc
import httpx
import pytest
from r3mes.users.v1 import users_pb2

from gateway.credentials import CREDENTIAL_IN_REQUEST_MESSAGE, REDACTED
from runner.local_stack import LocalStack
from services.core.testing import new_wallet_address
from services.core.validators import API_KEY_PREFIX, new_api_key
from tests.e2e.raw import GRPC_PATH
from tests.e2e.test_access_log import (
    access_log_line,
    grpc_web_call,
    grpc_web_status,
    json_access_log_entry,
)

KEY = new_api_key()
KEY_BODY = KEY.removeprefix(API_KEY_PREFIX)


def assert_nowhere_in_the_logs(stack: LocalStack) -> None:
    for started in stack.started:  # Envoy, the front door and the services, however hosted
        assert KEY_BODY not in stack.log_of(started.name), started.name


@pytest.mark.parametrize(
    "path",
    [
        f"/v1/users/{new_wallet_address()}?api_key={KEY}",
        f"/v1/users/{new_wallet_address()}?page_size=1&key={KEY}",
        f"/v1/users/{KEY}",
        f"/v1/users/{KEY.replace('_', '%5F')}",
        f"/healthz?token={KEY}",
    ],
    ids=["query api_key", "any query parameter", "path", "percent-encoded", "a page"],
)
def test_a_url_holding_an_api_key_is_refused_and_logged_without_it(
    stack: LocalStack, path: str
) -> None:
    reply = httpx.get(f"{stack.rest_url}{path}", timeout=10)

    assert reply.status_code == 400
    assert reply.json() == {"code": 3, "message": CREDENTIAL_IN_REQUEST_MESSAGE, "details": []}
    line = access_log_line(stack, reply.headers["x-request-id"])
    assert REDACTED in line
    assert_nowhere_in_the_logs(stack)


def test_a_grpc_web_call_with_an_api_key_in_its_url_is_invalid_argument(
    stack: LocalStack,
) -> None:
    request = users_pb2.GetUserRequest(wallet_address=new_wallet_address()).SerializeToString()

    reply = grpc_web_call(stack, request, path=f"{GRPC_PATH}?api_key={KEY}")

    assert grpc_web_status(reply) == "3"
    assert reply.headers["grpc-message"] == CREDENTIAL_IN_REQUEST_MESSAGE
    assert f"POST {REDACTED} -> 200 grpc=3 " in access_log_line(
        stack, reply.headers["x-request-id"]
    )
    assert_nowhere_in_the_logs(stack)


def test_a_grpc_call_with_an_api_key_in_its_path_is_invalid_argument(stack: LocalStack) -> None:
    with grpc.insecure_channel(stack.gateway_target) as channel:
        method = cast(
            "grpc.UnaryUnaryMultiCallable[bytes, bytes]",
            channel.unary_unary(f"/r3mes.users.v1.UsersService/{KEY}"),
        )
        call = method.future(b"", timeout=10)
        code, details = call.code(), call.details()

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == CREDENTIAL_IN_REQUEST_MESSAGE
    assert_nowhere_in_the_logs(stack)


def test_a_user_agent_holding_an_api_key_is_refused_and_logged_without_it(
    json_logging_stack: LocalStack,
) -> None:
    reply = httpx.get(
        f"{json_logging_stack.rest_url}/v1/users/{new_wallet_address()}",
        headers={"user-agent": f"client/1.0 ({KEY})"},
        timeout=10,
    )

    assert reply.status_code == 400
    assert reply.json()["message"] == CREDENTIAL_IN_REQUEST_MESSAGE
    entry = json_access_log_entry(json_logging_stack, reply.headers["x-request-id"])
    assert entry["user_agent"] == entry["path"] == entry["grpc_path"] == REDACTED
    assert entry["grpc_status"] == "3"
    assert_nowhere_in_the_logs(json_logging_stack)


def test_a_referer_or_request_id_holding_an_api_key_is_never_logged(
    json_logging_stack: LocalStack,
) -> None:
    reply = httpx.get(
        f"{json_logging_stack.rest_url}/v1/users/{new_wallet_address()}",
        headers={"referer": f"https://app.example/?k={KEY}", "x-request-id": KEY},
        timeout=10,
    )

    assert reply.status_code == 404  # USER_NOT_FOUND: neither is logged, so the call goes on
    assert reply.headers["x-request-id"] != KEY  # the gateway chose its own
    assert_nowhere_in_the_logs(json_logging_stack)
