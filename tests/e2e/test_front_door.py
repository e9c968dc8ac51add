"""The gateway port as a newcomer meets it: a landing page, the API page, the OpenAPI document
for this very gateway, the health of every service, and grpcurl's reflection."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf import descriptor_pool
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from swagger_ui_bundle import swagger_ui_path

from gateway.frontdoor.health import HealthChecker
from gateway.frontdoor.pages import FAVICON_CACHE_CONTROL, Pages, http_server
from runner.local_stack import LOOPBACK, LocalStack, StackPorts, grpc_serving, stack_environment
from services.core.ports import free_port
from services.core.registry import NAMES, SERVICES
from services.core.settings import Settings
from services.core.testing import new_wallet_address
from tools.openapi import DEFAULT_OUTPUT

GRPCURL = str(Path(sys.executable).parent / "grpcurl")
START_TIMEOUT_SECONDS = 30.0
# Every registered service is public: reflection lists them by name, as grpcurl sorts them.
PUBLIC_SERVICES = sorted(spec.proto_service for spec in SERVICES)


def grpcurl(stack: LocalStack, *verb: str, data: object = None) -> subprocess.CompletedProcess[str]:
    """`grpcurl -plaintext [-d data] <gateway> verb...`, as docs/api.md shows it."""
    # -max-time bounds each call: the buffered reflection stream used to hang for minutes.
    options = ["-max-time", "10", *(["-d", json.dumps(data)] if data is not None else [])]
    command = [GRPCURL, "-plaintext", *options, stack.gateway_target, *verb]
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


async def test_the_landing_page_says_what_this_is_and_links_on(rest: httpx.AsyncClient) -> None:
    reply = await rest.get("/")

    assert reply.status_code == 200
    assert reply.headers["content-type"] == "text/html; charset=utf-8"
    for link in ('href="/docs"', 'href="/openapi.json"', 'href="/healthz"'):
        assert link in reply.text


async def test_the_api_page_loads_swagger_ui_from_the_gateway_itself(
    rest: httpx.AsyncClient,
) -> None:
    page = await rest.get("/docs")
    script = await rest.get("/docs/swagger-ui-bundle.js")

    assert page.status_code == 200
    assert '<script src="/docs/swagger-ui-bundle.js">' in page.text
    assert 'url: "/openapi.json"' in page.text
    assert "https://" not in page.text  # nothing from outside the suite
    assert "validatorUrl: null" in page.text  # not even the online validator's badge
    assert script.status_code == 200
    assert script.headers["content-type"] == "text/javascript"
    assert script.content == (Path(str(swagger_ui_path)) / "swagger-ui-bundle.js").read_bytes()


async def test_only_the_files_of_the_api_page_are_served_under_docs(
    rest: httpx.AsyncClient,
) -> None:
    reply = await rest.get("/docs/..%2F..%2Fpyproject.toml")

    assert reply.status_code == 404


async def test_the_openapi_document_names_this_gateway_as_its_server(
    rest: httpx.AsyncClient, stack: LocalStack
) -> None:
    reply = await rest.get("/openapi.json")

    served = reply.json()
    assert served["servers"] == [{"url": stack.rest_url, "description": "this gateway"}]
    committed = json.loads(DEFAULT_OUTPUT.read_text())
    assert served["paths"] == committed["paths"]


async def test_healthz_reports_every_service_serving(rest: httpx.AsyncClient) -> None:
    reply = await rest.get("/healthz")

    assert reply.status_code == 200
    assert reply.json() == {
        "status": "SERVING",
        "services": dict.fromkeys(NAMES, "SERVING"),
        "components": {f"{name}.database": "SERVING" for name in NAMES},
        "not_serving": [],
    }


@pytest.fixture
def front_door_with_all_but_users_down(stack: LocalStack) -> Iterator[str]:
    """A front door whose users target is the running one and the others ports nobody serves."""
    down = {name: f"{LOOPBACK}:{free_port()}" for name in NAMES if name != "users"}
    settings = Settings().with_targets(**down, users=stack.grpc_target("users"))
    checker = HealthChecker(settings)
    server = http_server(LOOPBACK, 0, Pages.load(DEFAULT_OUTPUT, checker.check))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        checker.close()


def test_healthz_is_503_and_names_the_services_not_serving(
    front_door_with_all_but_users_down: str,
) -> None:
    reply = httpx.get(f"{front_door_with_all_but_users_down}/healthz", timeout=10)

    assert reply.status_code == 503
    assert reply.json()["not_serving"] == [name for name in NAMES if name != "users"]
    assert reply.json()["services"]["users"] == "SERVING"
    assert reply.json()["services"]["mining"] == "UNREACHABLE"


def test_grpcurl_lists_every_public_service_through_the_gateway(stack: LocalStack) -> None:
    listed = grpcurl(stack, "list")

    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == [
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        *PUBLIC_SERVICES,
    ]


def test_grpcurl_describes_a_method_with_its_http_and_access_options(stack: LocalStack) -> None:
    described = grpcurl(stack, "describe", "r3mes.users.v1.UsersService.GetUser")

    assert described.returncode == 0, described.stderr
    assert "rpc GetUser ( .r3mes.users.v1.GetUserRequest )" in described.stdout
    assert 'get:"/v1/users/{wallet_address}"' in described.stdout
    assert "access:ACCESS_PUBLIC" in described.stdout


def test_grpcurl_calls_a_public_method_through_the_gateway(stack: LocalStack) -> None:
    wallet = new_wallet_address()
    created = grpcurl(
        stack, "r3mes.users.v1.UsersService/CreateUser", data={"wallet_address": wallet}
    )
    read = grpcurl(stack, "r3mes.users.v1.UsersService/GetUser", data={"wallet_address": wallet})

    assert created.returncode == 0, created.stderr
    assert json.loads(read.stdout)["user"]["walletAddress"] == wallet


def test_reflection_v1_answers_through_the_gateway_as_v1alpha_does(stack: LocalStack) -> None:
    # grpcurl 1.8 speaks only v1alpha; newer clients ask v1 first. Same messages, other path.
    with grpc.insecure_channel(stack.gateway_target) as channel:
        call = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        replies = list(
            call(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
        )

    names = [s.name for s in replies[0].list_services_response.service]
    assert sorted(n for n in names if n.startswith("r3mes.")) == PUBLIC_SERVICES


def test_a_reflection_client_resolves_every_import_of_a_service_through_the_gateway(
    stack: LocalStack,
) -> None:
    with grpc.insecure_channel(stack.gateway_target) as channel:
        pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        method = pool.FindMethodByName("r3mes.credits.v1.CreditsService.GrantCredits")

    assert method.input_type.full_name == "r3mes.credits.v1.GrantCreditsRequest"


@pytest.mark.parametrize(
    "path",
    ["/", "/docs", "/docs/swagger-ui.css", "/openapi.json", "/healthz", "/docs/no-such-file"],
)
async def test_the_front_door_pages_do_not_name_their_server(
    rest: httpx.AsyncClient, path: str
) -> None:
    reply = await rest.get(path)

    assert reply.status_code in (200, 404)
    assert "server" not in reply.headers


async def test_the_favicon_is_no_content_cached_for_a_day(rest: httpx.AsyncClient) -> None:
    reply = await rest.get("/favicon.ico")

    assert reply.status_code == 204
    assert reply.headers["cache-control"] == FAVICON_CACHE_CONTROL == "public, max-age=86400"
    assert reply.content == b""
    assert "server" not in reply.headers


@pytest.fixture
def front_door_of_silent_services(tmp_path: Path) -> Iterator[LocalStack]:
    """The front door alone, its services a socket that accepts connections and never answers
    (as services still starting do): each /healthz takes the front door's whole check timeout."""
    with socket.socket() as silent:
        silent.bind((LOOPBACK, 0))
        silent.listen()
        target = f"{LOOPBACK}:{silent.getsockname()[1]}"
        ports = StackPorts.pick()
        targets = {f"R3MES_{name.upper()}_TARGET": target for name in ports.grpc}
        front_door = LocalStack(
            ports, tmp_path, stack_environment(ports, tmp_path, "unused", targets)
        )
        front_door.start_front_door()
        try:
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            while not grpc_serving(f"{LOOPBACK}:{ports.frontdoor_grpc}"):
                assert time.monotonic() < deadline, front_door.logs()
                time.sleep(0.1)
            yield front_door
        finally:
            front_door.stop()


def test_a_health_poll_that_hangs_up_early_leaves_no_traceback(
    front_door_of_silent_services: LocalStack,
) -> None:
    port = front_door_of_silent_services.ports.frontdoor
    with socket.create_connection((LOOPBACK, port)) as impatient:
        impatient.sendall(f"GET /healthz HTTP/1.1\r\nhost: {LOOPBACK}\r\n\r\n".encode())
        # Closed at once with a reset, as a client whose timeout fired: the answer finds no one.
        impatient.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # Asked after the one above, so answered after it.
    patient = httpx.get(f"http://{LOOPBACK}:{port}/healthz", timeout=10)
    # Stopped, so that everything it would print is in its log.
    front_door_of_silent_services.stop()

    assert patient.status_code == 503
    assert patient.json()["not_serving"] == list(NAMES)
    output = (front_door_of_silent_services.work_dir / "frontdoor.log").read_text()
    assert "Traceback" not in output
    assert "Error" not in output
