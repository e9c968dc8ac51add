"""What the kernel records, read as Prometheus reads it: the request chain's series per method
and code (only with a metrics port set), the /metrics page itself, rate-limit decisions, the
API-key cache, units of work run again, and the pool: connections in use, waiting, timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import grpc
import httpx
import pytest
from r3mes.credits.v1 import credits_pb2, credits_pb2_grpc
from sqlalchemy.pool import QueuePool

from services.core.db import Database
from services.core.errors import TransactionConflict, Unavailable
from services.core.lifecycle import ServiceServer, build_server
from services.core.metrics import serve_metrics
from services.core.settings import Settings
from services.core.testing import (
    CreateServer,
    FakeClock,
    metric_value,
    new_wallet_address,
    running_server,
)
from services.core.uow import UnitOfWork
from tests.conftest import RUN_SUFFIX, settings_for
from tests.integration.apikeys_support import as_key, issue_key
from tests.integration.ratelimited import WALLET_HEADER, limited_server, limited_settings
from tests.integration.test_interceptor_chain import Probe
from tests.integration.topologies import SPLIT, running_suite

PROBE = {"grpc_type": "unary", "grpc_service": "test.Probe"}


def counts() -> dict[str, float]:
    """The probe's series that the tests below change."""
    return {
        "started Echo": metric_value("grpc_server_started_total", **PROBE, grpc_method="Echo"),
        "Echo OK": metric_value(
            "grpc_server_handled_total", **PROBE, grpc_method="Echo", grpc_code="OK"
        ),
        "Fail Internal": metric_value(
            "grpc_server_handled_total", **PROBE, grpc_method="Fail", grpc_code="Internal"
        ),
        "timed Echo": metric_value(
            "grpc_server_handling_seconds_count", **PROBE, grpc_method="Echo"
        ),
    }


def probe_server(probe: Probe) -> CreateServer:
    async def create(settings: Settings) -> tuple[ServiceServer, int]:
        register = (
            lambda server: server.add_generic_rpc_handlers((probe.handler(),)),
            "test.Probe",
        )
        return build_server(settings, "users", [register])

    return create


@pytest.fixture
async def probed(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[grpc.aio.Channel]:
    """A probe server whose `metrics_port` is the test's parameter (None: metrics off)."""
    settings = Settings(data_dir=tmp_path, metrics_port=request.param)
    async with running_server(probe_server(Probe()), settings, "users") as (_, channel):
        yield channel


async def call(channel: grpc.aio.Channel, method: str) -> None:
    unary: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        f"/test.Probe/{method}"
    )
    with contextlib.suppress(grpc.aio.AioRpcError):
        await unary(b"")


@pytest.mark.parametrize("probed", [0], indirect=True)
async def test_each_call_is_counted_by_service_method_and_code_and_timed(
    probed: grpc.aio.Channel,
) -> None:
    before = counts()

    for method in ("Echo", "Echo", "Echo", "Fail"):
        await call(probed, method)
    # A call is counted as its handler's task ends on the server, which on a busy machine can
    # be just after the client has read its status: wait (boundedly) for the server to finish.
    for _ in range(100):
        if metric_value("r3mes_grpc_server_calls_in_flight") == 0:
            break
        await asyncio.sleep(0.05)

    added = {name: value - before[name] for name, value in counts().items()}
    assert added == {"started Echo": 3, "Echo OK": 3, "Fail Internal": 1, "timed Echo": 3}
    assert metric_value("r3mes_grpc_server_calls_in_flight") == 0


@pytest.mark.parametrize("probed", [None], indirect=True)
async def test_without_a_metrics_port_the_chain_records_nothing(
    probed: grpc.aio.Channel,
) -> None:
    before = counts()

    await call(probed, "Echo")

    assert counts() == before


def test_the_metrics_port_serves_the_series_in_prometheus_text_format(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path, metrics_port=0)
    server = serve_metrics(settings)
    assert server is not None
    try:
        reply = httpx.get(f"http://127.0.0.1:{server.server_port}/metrics", timeout=5)
    finally:
        server.shutdown()
        server.server_close()

    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE grpc_server_handled_total counter" in reply.text
    assert "# TYPE grpc_server_handling_seconds histogram" in reply.text
    assert "# TYPE r3mes_db_pool_connections_in_use gauge" in reply.text


def test_a_metrics_port_in_use_is_refused_naming_the_setting(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings(data_dir=tmp_path, metrics_port=port)

        with pytest.raises(RuntimeError, match="set R3MES_METRICS_PORT to a free port"):
            serve_metrics(settings)


async def test_rate_limit_decisions_are_counted_by_policy_and_result(tmp_path: Path) -> None:
    def decisions() -> tuple[float, float]:
        return (
            metric_value("r3mes_ratelimit_decisions_total", policy="read", result="allowed"),
            metric_value("r3mes_ratelimit_decisions_total", policy="read", result="limited"),
        )

    before = decisions()
    wallet = new_wallet_address()
    async with limited_server(limited_settings(tmp_path)) as (_, channel):
        stub = credits_pb2_grpc.CreditsServiceStub(channel)
        request = credits_pb2.GetBalanceRequest(wallet_address=wallet)
        codes = []
        for _ in range(4):  # the read policy allows 3 an hour
            try:
                await stub.GetBalance(request, metadata=((WALLET_HEADER, wallet),))
                codes.append(grpc.StatusCode.OK)
            except grpc.aio.AioRpcError as error:
                codes.append(error.code())

    assert codes[-1] is grpc.StatusCode.RESOURCE_EXHAUSTED
    allowed, limited = decisions()
    assert (allowed - before[0], limited - before[1]) == (3, 1)
    assert metric_value("r3mes_ratelimit_limiter_available") >= 1
    assert metric_value("r3mes_ratelimit_failing_open") == 0


async def test_an_api_key_asked_twice_is_one_cache_miss_then_one_hit(settings: Settings) -> None:
    def lookups() -> tuple[float, float]:
        return (
            metric_value("r3mes_apikey_cache_lookups_total", result="miss"),
            metric_value("r3mes_apikey_cache_lookups_total", result="hit"),
        )

    async with running_suite(settings, SPLIT, FakeClock()) as suite:
        wallet = new_wallet_address()
        secret = (await issue_key(suite.apikeys, wallet)).secret
        before = lookups()
        request = credits_pb2.ListLedgerEntriesRequest(wallet_address=wallet)
        for _ in range(2):
            await suite.credits.ListLedgerEntries(request, metadata=as_key(secret))

    misses, hits = lookups()
    assert (misses - before[0], hits - before[1]) == (1, 1)


async def test_a_unit_of_work_run_again_after_a_conflict_is_counted_and_holds_a_connection(
    tmp_path: Path,
) -> None:
    database = Database.from_settings(Settings(data_dir=tmp_path), "metricsprobe")
    uow = UnitOfWork(database, lambda connection: connection, attempts=3)
    tries: list[float] = []

    async def work(_connection: object) -> str:
        tries.append(metric_value("r3mes_db_pool_connections_in_use", service="metricsprobe"))
        if len(tries) == 1:
            raise TransactionConflict("the first try loses")
        return "done"

    retried_before = metric_value("r3mes_db_unit_of_work_retries_total", service="metricsprobe")
    try:
        assert await uow.run(work) == "done"
    finally:
        await database.dispose()

    assert tries == [1, 1]  # each try held one pooled connection while it ran
    retried = metric_value("r3mes_db_unit_of_work_retries_total", service="metricsprobe")
    assert retried == retried_before + 1
    assert metric_value("r3mes_db_pool_connections_in_use", service="metricsprobe") == 0


@pytest.mark.postgres
@pytest.mark.usefixtures("postgres_available")
async def test_a_unit_of_work_that_finds_no_pooled_connection_in_time_is_a_pool_timeout(
    tmp_path: Path,
) -> None:
    settings = settings_for("postgres", tmp_path, suffix=f"{RUN_SUFFIX}_pool").model_copy(
        update={"db_pool_size": 1, "db_connect_timeout_seconds": 1.0}
    )
    database = Database.from_settings(settings, "metricspool")
    pool = cast(QueuePool, database.engine.pool)
    capacity = pool.size() + pool._max_overflow  # SQLAlchemy's default overflow of 10
    release, holding = asyncio.Event(), asyncio.Semaphore(0)

    async def hold() -> None:
        async with database.transaction():
            holding.release()
            await release.wait()

    timeouts_before = metric_value("r3mes_db_pool_timeouts_total", service="metricspool")
    holders = [asyncio.ensure_future(hold()) for _ in range(capacity)]
    try:
        for _ in range(capacity):
            await holding.acquire()
        in_use = metric_value("r3mes_db_pool_connections_in_use", service="metricspool")
        late = asyncio.ensure_future(hold())
        await asyncio.sleep(0)  # it starts, and waits for a connection
        waiting = metric_value("r3mes_db_pool_waiting", service="metricspool")
        with pytest.raises(Unavailable):
            await late
    finally:
        release.set()
        await asyncio.gather(*holders)
        await database.dispose()

    assert (in_use, waiting) == (capacity, 1)
    assert (
        metric_value("r3mes_db_pool_timeouts_total", service="metricspool") == timeouts_before + 1
    )
    assert metric_value("r3mes_db_pool_waiting", service="metricspool") == 0
