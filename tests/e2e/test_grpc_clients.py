"""gRPC and gRPC-Web clients through the same gateway port as REST."""

from __future__ import annotations

import struct

import grpc
import httpx
import pytest
from r3mes.users.v1 import users_pb2, users_pb2_grpc

from runner.local_stack import LocalStack
from services.core.testing import new_wallet_address
from tests.e2e.conftest import ALLOWED_ORIGIN, MAX_REQUEST_BYTES

DATA_FRAME = 0x00
TRAILER_FRAME = 0x80


def grpc_web_frame(message: bytes) -> bytes:
    return struct.pack(">BI", DATA_FRAME, len(message)) + message


def parse_grpc_web(body: bytes) -> tuple[list[bytes], dict[str, str]]:
    """The messages and the trailers of a gRPC-Web (binary) response body."""
    messages, trailers, offset = [], {}, 0
    while offset < len(body):
        flags, length = struct.unpack_from(">BI", body, offset)
        payload = body[offset + 5 : offset + 5 + length]
        offset += 5 + length
        if flags & TRAILER_FRAME:
            for line in payload.decode().strip().split("\r\n"):
                key, _, value = line.partition(":")
                trailers[key.strip().lower()] = value.strip()
        else:
            messages.append(payload)
    return messages, trailers


async def test_a_grpc_client_reaches_a_service_through_the_gateway(stack: LocalStack) -> None:
    wallet = new_wallet_address()
    async with grpc.aio.insecure_channel(stack.gateway_target) as channel:
        users = users_pb2_grpc.UsersServiceStub(channel)

        await users.CreateUser(users_pb2.CreateUserRequest(wallet_address=wallet), timeout=5)
        read = await users.GetUser(users_pb2.GetUserRequest(wallet_address=wallet), timeout=5)

    assert read.user.wallet_address == wallet


async def test_a_grpc_call_over_the_size_limit_is_resource_exhausted(stack: LocalStack) -> None:
    oversized = users_pb2.CreateUserRequest(wallet_address="x" * (2 * MAX_REQUEST_BYTES))
    async with grpc.aio.insecure_channel(stack.gateway_target) as channel:
        users = users_pb2_grpc.UsersServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await users.CreateUser(oversized, timeout=5)

    assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_a_grpc_web_client_reads_a_user(rest: httpx.AsyncClient) -> None:
    wallet = new_wallet_address()
    await rest.post("/v1/users", json={"wallet_address": wallet})
    request = users_pb2.GetUserRequest(wallet_address=wallet).SerializeToString()

    reply = await rest.post(
        "/r3mes.users.v1.UsersService/GetUser",
        content=grpc_web_frame(request),
        headers={
            "content-type": "application/grpc-web+proto",
            "x-grpc-web": "1",
            "origin": ALLOWED_ORIGIN,
        },
    )

    assert reply.status_code == 200
    assert reply.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    messages, trailers = parse_grpc_web(reply.content)
    assert trailers["grpc-status"] == "0"
    assert users_pb2.GetUserResponse.FromString(messages[0]).user.wallet_address == wallet


async def test_a_grpc_web_error_carries_its_status(rest: httpx.AsyncClient) -> None:
    request = users_pb2.GetUserRequest(wallet_address=new_wallet_address()).SerializeToString()

    reply = await rest.post(
        "/r3mes.users.v1.UsersService/GetUser",
        content=grpc_web_frame(request),
        headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1"},
    )

    # In the trailer frame of the body, or in the headers of a trailers-only reply.
    _, trailers = parse_grpc_web(reply.content)
    status = trailers.get("grpc-status") or reply.headers["grpc-status"]
    assert status == str(grpc.StatusCode.NOT_FOUND.value[0])
