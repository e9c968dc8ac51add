"""The request path benchmark's setup and its checks: before a path is loaded, a Python client
makes one call and asserts the reply is the one the load will count (load generators cannot read
a gRPC status: it travels in trailers, and every gRPC reply is HTTP 200)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import httpx
from google.protobuf.empty_pb2 import Empty
from r3mes.users.v1 import users_pb2, users_pb2_grpc

from bench.baseline_app import DATABASE_URL_VARIABLE, SCHEMA_SUFFIX_VARIABLE
from bench.noop_server import FULL_METHOD as NOOP_METHOD
from bench.processes import process_tree, spawned, wait_until
from runner.local_stack import LOOPBACK, LocalStack, grpc_serving
from services.core.ports import free_port
from services.core.testing import new_wallet_address

READY_TIMEOUT_SECONDS = 30.0
NOOP_REQUEST = Empty()


def create_user(users_target: str) -> str:
    wallet = new_wallet_address()
    with grpc.insecure_channel(users_target) as channel:
        request = users_pb2.CreateUserRequest(wallet_address=wallet)
        users_pb2_grpc.UsersServiceStub(channel).CreateUser(request, timeout=5)
    return wallet


def get_user_request(wallet: str) -> users_pb2.GetUserRequest:
    return users_pb2.GetUserRequest(wallet_address=wallet)


@contextmanager
def noop_server(stack: LocalStack, log_dir: Path, *, bare: bool) -> Iterator[tuple[str, int]]:
    """The no-op server in a process of its own, with the stack's settings; (target, pid)."""
    port = free_port()
    environment = {**stack.environment, "R3MES_USERS_PORT": str(port)}
    command = [sys.executable, "-m", "bench.noop_server", *(["--bare"] if bare else [])]
    name = "noop-bare" if bare else "noop"
    with spawned(name, command, environment, log_dir) as (process, log):
        target = f"{LOOPBACK}:{port}"
        wait_until(partial(grpc_serving, target), process, log, READY_TIMEOUT_SECONDS)
        yield target, process.pid


def noop_url(target: str) -> str:
    return f"http://{target}{NOOP_METHOD}"


def noop_answers(target: str) -> None:
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            NOOP_METHOD,
            request_serializer=Empty.SerializeToString,
            response_deserializer=Empty.FromString,
        )
        call(NOOP_REQUEST, timeout=5)


def get_user_answers(users_target: str, request: users_pb2.GetUserRequest) -> None:
    with grpc.insecure_channel(users_target) as channel:
        reply = users_pb2_grpc.UsersServiceStub(channel).GetUser(request, timeout=5)
    if reply.user.wallet_address != request.wallet_address:
        raise AssertionError(f"GetUser answered another user: {reply}")


def get_user_refused(users_target: str, request: users_pb2.GetUserRequest) -> None:
    with grpc.insecure_channel(users_target) as channel:
        try:
            users_pb2_grpc.UsersServiceStub(channel).GetUser(request, timeout=5)
        except grpc.RpcError as error:
            if error.code() is grpc.StatusCode.INVALID_ARGUMENT:
                return
            raise
    raise AssertionError(f"GetUser({request.wallet_address!r}) was not refused")


def rest_answers(url: str, wallet: str) -> dict[str, Any]:
    """The JSON of one GET, which the baseline must match in shape."""
    reply = httpx.get(url, timeout=5)
    reply.raise_for_status()
    body: dict[str, Any] = reply.json()
    if body["user"]["wallet_address"] != wallet:
        raise AssertionError(f"GET {url} answered another user: {body}")
    return body


def baseline_answers(url: str, rest_body: dict[str, Any]) -> None:
    reply = httpx.get(url, timeout=5)
    reply.raise_for_status()
    body = reply.json()
    if set(body["user"]) != set(rest_body["user"]) or (
        body["user"]["wallet_address"] != rest_body["user"]["wallet_address"]
    ):
        raise AssertionError(f"the baseline answers {body}, the gateway {rest_body}")


def _baseline_environment(stack: LocalStack) -> dict[str, str]:
    settings = stack.environment
    environment = {k: v for k, v in os.environ.items() if not k.startswith("R3MES_")}
    if "R3MES_DATABASE_URL" in settings:
        environment[DATABASE_URL_VARIABLE] = settings["R3MES_DATABASE_URL"]
        environment[SCHEMA_SUFFIX_VARIABLE] = settings.get("R3MES_SCHEMA_SUFFIX", "")
    else:
        data_dir = Path(settings["R3MES_DATA_DIR"])
        environment[DATABASE_URL_VARIABLE] = f"sqlite+aiosqlite:///{data_dir / 'users.db'}"
    return environment


def _answers_http(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code < 500
    except httpx.HTTPError:
        return False


@contextmanager
def baseline(
    stack: LocalStack, workers: int, log_dir: Path
) -> Iterator[tuple[str, Callable[[], dict[str, int]]]]:
    """The baseline under uvicorn (uvloop and httptools, as `uvicorn[standard]` picks, access
    log on as by default), reading the stack's users, credits and mining tables; (URL, its
    processes by name)."""
    port = free_port()
    command = [
        *(sys.executable, "-m", "uvicorn", "bench.baseline_app:app"),
        *("--host", LOOPBACK, "--port", str(port), "--workers", str(workers)),
        *("--loop", "uvloop", "--http", "httptools"),
    ]
    url = f"http://{LOOPBACK}:{port}"
    name = f"fastapi-{workers}"
    with spawned(name, command, _baseline_environment(stack), log_dir) as (process, log):
        probe = partial(_answers_http, f"{url}/v1/users/{new_wallet_address()}")
        wait_until(probe, process, log, READY_TIMEOUT_SECONDS)
        yield url, lambda: {f"uvicorn-{pid}": pid for pid in process_tree(process.pid)}


async def drop_schemas(postgres_url: str, schemas: Sequence[str]) -> None:
    connection = await asyncpg.connect(
        postgres_url.replace("postgresql+asyncpg://", "postgresql://")
    )
    try:
        for schema in schemas:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()
