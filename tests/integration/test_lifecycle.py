"""Start, health, reflection, and graceful shutdown of a real server."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from sqlalchemy import inspect

from services.core.lifecycle import PortUnavailable, build_server, open_database, serve
from services.core.settings import Settings
from services.core.testing import running_server
from services.users.server import create_server
from tests.integration.rpc import failure_of

SLOW_METHOD = "/test.Slow/Wait"
SLOW_CALL_SECONDS = 0.5
# Long enough that the calls sent after SIGTERM reach the server while the first ones still run,
# even on a machine busy with the whole suite (with 0.5 s, the draining could end before they
# were sent, and the server, stopped, cancelled them).
QUEUED_CALL_SECONDS = 2.0


async def test_a_started_service_reports_serving_for_itself_and_the_whole_server(
    tmp_path: Path,
) -> None:
    async with running_server(create_server, Settings(data_dir=tmp_path), "users") as (_, channel):
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("r3mes.users.v1.UsersService", ""):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_users_service(tmp_path: Path) -> None:
    async with running_server(create_server, Settings(data_dir=tmp_path), "users") as (_, channel):
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        replies = [reply async for reply in stub.ServerReflectionInfo(iter([request]))]

    listed = {service.name for service in replies[0].list_services_response.service}
    assert "r3mes.users.v1.UsersService" in listed
    assert "grpc.health.v1.Health" in listed


def _slow_handler() -> grpc.GenericRpcHandler:
    async def wait(request: bytes, context: Any) -> bytes:
        await asyncio.sleep(SLOW_CALL_SECONDS)
        return b"done"

    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(wait)
    return grpc.method_handlers_generic_handler("test.Slow", {"Wait": handler})


async def test_shutdown_lets_an_in_flight_call_finish_and_refuses_new_ones(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path, ports={"users": 0})
    server, port = build_server(
        settings, "users", [(lambda s: s.add_generic_rpc_handlers((_slow_handler(),)), "test.Slow")]
    )
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        slow_call = cast(
            "grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]", channel.unary_unary(SLOW_METHOD)
        )
        in_flight = asyncio.ensure_future(slow_call(b""))
        await asyncio.sleep(0.1)
        stopping = asyncio.ensure_future(server.stop(grace_seconds=5))
        await asyncio.sleep(0.05)

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await slow_call(b"", timeout=1)
        assert await in_flight == b"done"
        await stopping

    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE


def test_sigterm_stops_the_service_process_cleanly(tmp_path: Path) -> None:
    env = {**os.environ, "R3MES_DATA_DIR": str(tmp_path), "R3MES_USERS_PORT": "0"}
    process = subprocess.Popen(
        [sys.executable, "-m", "services.users"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if '"message": "serving calls"' in line:
                break
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_sigterm_with_many_calls_queued_finishes_the_running_ones_and_refuses_the_rest(
    tmp_path: Path,
) -> None:
    started: list[bytes] = []
    first_started = asyncio.Event()

    async def wait(request: bytes, context: Any) -> bytes:
        started.append(request)
        first_started.set()
        await asyncio.sleep(QUEUED_CALL_SECONDS)
        return b"done"

    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(wait)
    generic = grpc.method_handlers_generic_handler("test.Slow", {"Wait": handler})
    settings = Settings(data_dir=tmp_path, ports={"users": 0})
    server, port = build_server(
        settings, "users", [(lambda s: s.add_generic_rpc_handlers((generic,)), "test.Slow")]
    )
    serving = asyncio.ensure_future(serve(server, grace_seconds=5))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await channel.channel_ready()
        slow_call = cast(
            "grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]", channel.unary_unary(SLOW_METHOD)
        )

        async def outcome() -> tuple[grpc.StatusCode, str]:
            try:
                await slow_call(b"", timeout=10)
            except grpc.aio.AioRpcError as error:
                reason = failure_of(error).reason if error.trailing_metadata() else ""
                return error.code(), reason
            return grpc.StatusCode.OK, ""

        before = [asyncio.ensure_future(outcome()) for _ in range(200)]
        # Some run while others queue.
        await asyncio.wait_for(first_started.wait(), QUEUED_CALL_SECONDS / 2)
        os.kill(os.getpid(), signal.SIGTERM)  # what an orchestrator sends; serve() handles it
        after = [asyncio.ensure_future(outcome()) for _ in range(200)]
        outcomes = Counter(await asyncio.gather(*before, *after))
    await serving

    codes = Counter(code for (code, _), n in outcomes.items() for _ in range(n))
    # Every call that had started finished; every other one was told to retry, none cancelled.
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, outcomes
    assert codes[grpc.StatusCode.OK] == len(started)
    assert outcomes[(grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN")] > 0, outcomes


async def test_a_second_server_on_a_taken_port_fails_with_an_error_naming_the_port_and_its_setting(
    tmp_path: Path,
) -> None:
    first, port = build_server(Settings(data_dir=tmp_path, ports={"users": 0}), "users", [])
    await first.start()
    try:
        with pytest.raises(PortUnavailable) as refusal:
            build_server(Settings(data_dir=tmp_path, ports={"credits": port}), "credits", [])
    finally:
        await first.stop(grace_seconds=0)

    assert f"127.0.0.1:{port}: the port is in use" in str(refusal.value)
    assert "set R3MES_CREDITS_PORT to a free port" in str(refusal.value)


async def test_a_service_whose_file_another_process_holds_locked_waits_for_it_rather_than_exit(
    tmp_path: Path,
) -> None:
    # Another process setting the file up (migrating a fresh file, not yet in WAL mode): while
    # it writes, SQLite refuses a new connection's switch to WAL at once instead of waiting
    # (waiting there could deadlock), as a canary starting beside its release once met.
    holder = sqlite3.connect(tmp_path / "users.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("CREATE TABLE setting_up (x)")
    loop = asyncio.get_running_loop()
    loop.call_later(0.3, holder.execute, "COMMIT")

    database = await open_database(Settings(data_dir=tmp_path), "users")
    try:
        async with database.engine.connect() as connection:
            tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    finally:
        await database.dispose()
        holder.close()

    assert {"setting_up", "users", "alembic_version"} <= set(tables)
