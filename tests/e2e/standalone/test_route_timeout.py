"""R3MES_GATEWAY_ROUTE_TIMEOUT_SECONDS is the longest a call may take through the gateway, for REST,
gRPC and gRPC-Web alike, whatever deadline a gRPC client chose."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import httpx
import pytest
from r3mes.users.v1 import users_pb2, users_pb2_grpc

from runner.local_stack import LocalStack, running_stack
from services.core.testing import new_wallet_address
from tests.e2e.conftest import INTERNAL_TOKEN
from tests.e2e.test_grpc_clients import grpc_web_frame, parse_grpc_web

ROUTE_TIMEOUT_SECONDS = 1.0
# Far longer than the route timeout: a reply before this is the gateway's, not the client's.
CLIENT_TIMEOUT_SECONDS = 10.0
GATEWAY_TIMEOUT_MESSAGE = "the call took longer than the gateway allows"


@pytest.fixture(scope="module")
def quick_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with running_stack(
        Path(tmp_path_factory.mktemp("route-timeout")),
        internal_token=INTERNAL_TOKEN,
        extra_environment={"R3MES_GATEWAY_ROUTE_TIMEOUT_SECONDS": str(ROUTE_TIMEOUT_SECONDS)},
    ) as running:
        yield running


@contextmanager
def stopped(stack: LocalStack, name: str) -> Iterator[None]:
    """The service's process frozen (SIGSTOP): it accepts connections and never answers."""
    pid = stack.pid_of(name)
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_rest_call_to_a_stopped_service_is_a_504_at_the_route_timeout(
    quick_stack: LocalStack,
) -> None:
    with stopped(quick_stack, "users"):
        reply = httpx.get(
            f"{quick_stack.rest_url}/v1/users/{new_wallet_address()}",
            timeout=CLIENT_TIMEOUT_SECONDS,
        )

    assert reply.status_code == 504
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["code"] == 4  # DEADLINE_EXCEEDED
    assert reply.elapsed.total_seconds() < CLIENT_TIMEOUT_SECONDS


@pytest.mark.parametrize(
    "deadline", [CLIENT_TIMEOUT_SECONDS, None], ids=["a longer deadline", "no deadline"]
)
async def test_a_grpc_client_gets_deadline_exceeded_from_the_gateway_whatever_its_deadline(
    quick_stack: LocalStack, deadline: float | None
) -> None:
    request = users_pb2.GetUserRequest(wallet_address=new_wallet_address())
    async with grpc.aio.insecure_channel(quick_stack.gateway_target) as channel:
        users = users_pb2_grpc.UsersServiceStub(channel)
        with stopped(quick_stack, "users"), pytest.raises(grpc.aio.AioRpcError) as failure:
            await users.GetUser(request, timeout=deadline)

    assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # Said by the gateway, not by the client's own deadline.
    assert failure.value.details() == GATEWAY_TIMEOUT_MESSAGE


def test_a_grpc_web_call_to_a_stopped_service_is_deadline_exceeded(
    quick_stack: LocalStack,
) -> None:
    request = users_pb2.GetUserRequest(wallet_address=new_wallet_address()).SerializeToString()
    with stopped(quick_stack, "users"):
        reply = httpx.post(
            f"{quick_stack.rest_url}/r3mes.users.v1.UsersService/GetUser",
            content=grpc_web_frame(request),
            headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1"},
            timeout=CLIENT_TIMEOUT_SECONDS,
        )

    _, trailers = parse_grpc_web(reply.content)
    status = trailers.get("grpc-status") or reply.headers["grpc-status"]
    assert status == str(grpc.StatusCode.DEADLINE_EXCEEDED.value[0])
