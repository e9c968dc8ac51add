"""Traces across the suite: one REST call through Envoy is one trace, from Envoy's span (tagged
with the request id) through every service it reaches, exported by every process to a real
OTLP receiver, and every log line of the call carries its trace id."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from runner.local_stack import LocalStack, Topology, running_stack
from services.core.registry import NAMES
from services.core.testing import new_wallet_address
from services.core.trace_collector import CollectedSpan, TraceCollector, running_collector
from tests.e2e.conftest import INTERNAL_TOKEN

SERVER, CLIENT = 2, 3  # opentelemetry.proto.trace.v1.Span.SpanKind
GET_USER = "r3mes.users.v1.UsersService/GetUser"
GET_BALANCE = "r3mes.credits.v1.CreditsService/GetBalance"
GET_MINER_STATS = "r3mes.mining.v1.MiningService/GetMinerStats"
# Envoy sends its spans every 5 s; the services' batches are shortened below.
EXPORT_WAIT_SECONDS = 30.0


@pytest.fixture(scope="module")
def collector() -> Iterator[TraceCollector]:
    with running_collector() as running:
        yield running


@contextmanager
def traced_stack(
    work_dir: Path, collector: TraceCollector, topology: Topology
) -> Iterator[LocalStack]:
    with running_stack(
        work_dir,
        internal_token=INTERNAL_TOKEN,
        topology=topology,
        extra_environment={
            "R3MES_OTLP_ENDPOINT": collector.endpoint,
            "R3MES_LOG_JSON": "true",
            "R3MES_RATELIMIT_BACKEND": "off",
            # The SDK's batch delay (5 s by default), so the test waits less.
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        },
    ) as running:
        yield running


@pytest.fixture(scope="module")
def traced_split_stack(
    tmp_path_factory: pytest.TempPathFactory, collector: TraceCollector
) -> Iterator[LocalStack]:
    with traced_stack(tmp_path_factory.mktemp("e2e-traces"), collector, "split") as running:
        yield running


@pytest.fixture(scope="module")
def traced_one_process_stack(
    tmp_path_factory: pytest.TempPathFactory, collector: TraceCollector
) -> Iterator[LocalStack]:
    with traced_stack(tmp_path_factory.mktemp("e2e-traces-1"), collector, "one-process") as running:
        yield running


def test_one_rest_get_user_in_the_split_topology_is_one_trace_across_envoy_users_credits_and_mining(
    traced_split_stack: LocalStack, collector: TraceCollector
) -> None:
    wallet, request_id = _get_user_over_rest(traced_split_stack)

    envoy, trace = _trace_of(collector, request_id, spans=9)

    # Envoy started the trace (the client sent no traceparent): its span is the root.
    assert (envoy.service, envoy.kind, envoy.parent_span_id) == ("r3mes-gateway", SERVER, None)
    users = _one(trace, "users", GET_USER, SERVER)
    assert users.parent_span_id == envoy.span_id
    assert users.attributes["r3mes.request_id"] == request_id
    assert users.attributes["rpc.grpc.status_code"] == 0
    # users asks its peers, each call a CLIENT span of users, parent of the peer's SERVER span.
    for peer, method in (("credits", GET_BALANCE), ("mining", GET_MINER_STATS)):
        asking = _one(trace, "users", method, CLIENT)
        assert asking.parent_span_id == users.span_id
        answering = _one(trace, peer, method, SERVER)
        assert answering.parent_span_id == asking.span_id
        assert answering.attributes["r3mes.request_id"] == request_id
        unit = _one(trace, peer, "unit of work", kind=1)
        assert unit.parent_span_id == answering.span_id
        assert unit.attributes["db.namespace"] == peer
    unit = _one(trace, "users", "unit of work", kind=1)
    assert (unit.parent_span_id, unit.attributes["r3mes.read_only"]) == (users.span_id, True)
    assert {s.service for s in trace} == {"r3mes-gateway", "users", "credits", "mining"}

    # Every process's log lines of this call carry its trace id, and the span that wrote them.
    spans_by_id = {s.span_id: s for s in trace}
    for process in ("users", "credits", "mining"):
        lines = _lines_of(traced_split_stack, process, request_id)
        assert lines, f"{process} logged nothing for {request_id}"
        assert {line["trace_id"] for line in lines} == {envoy.trace_id}
        assert {spans_by_id[line["span_id"]].service for line in lines} == {process}
    (gateway_line,) = [
        line
        for line in _lines_of(traced_split_stack, "envoy", request_id)
        if line.get("path") == f"/v1/users/{wallet}"
    ]
    assert gateway_line["trace_id"] == envoy.trace_id


def test_a_trace_the_client_started_is_continued_through_the_gateway_and_the_services(
    traced_split_stack: LocalStack, collector: TraceCollector
) -> None:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    with httpx.Client(base_url=traced_split_stack.rest_url, timeout=10.0) as rest:
        reply = rest.get(
            "/v1/network/stats", headers={"traceparent": f"00-{trace_id}-{parent_id}-01"}
        )
    assert reply.status_code == 200

    envoy, trace = _trace_of(collector, reply.headers["x-request-id"], spans=2)

    assert (envoy.trace_id, envoy.parent_span_id) == (trace_id, parent_id)
    stats = _one(trace, "users", "r3mes.users.v1.UsersService/GetNetworkStats", SERVER)
    assert stats.parent_span_id == envoy.span_id


def test_a_background_jobs_run_is_a_trace_with_its_units_of_work_below_it(
    traced_split_stack: LocalStack, collector: TraceCollector
) -> None:
    def a_job_with_its_units(received: Sequence[CollectedSpan]) -> bool:
        return bool(_jobs_with_units(received))

    # Each service runs its jobs (the idempotency sweeper, say) as soon as it starts.
    jobs = _jobs_with_units(collector.wait_for(a_job_with_its_units, EXPORT_WAIT_SECONDS))

    job, units = jobs[0]
    assert job.parent_span_id is None
    assert job.name == f"job {job.attributes['r3mes.job']}"
    assert {(u.trace_id, u.service) for u in units} == {(job.trace_id, job.service)}


def _jobs_with_units(
    received: Sequence[CollectedSpan],
) -> list[tuple[CollectedSpan, list[CollectedSpan]]]:
    jobs = [s for s in received if s.name.startswith("job ")]
    with_units = [
        (job, [s for s in received if s.name == "unit of work" and s.parent_span_id == job.span_id])
        for job in jobs
    ]
    return [(job, units) for job, units in with_units if units]


def test_in_one_process_the_trace_continues_into_the_co_hosted_peers_without_spans_of_rpcs(
    traced_one_process_stack: LocalStack, collector: TraceCollector
) -> None:
    _, request_id = _get_user_over_rest(traced_one_process_stack)

    envoy, trace = _trace_of(collector, request_id, spans=5)

    host = "+".join(NAMES)  # the one process's name: every service it hosts
    users = _one(trace, host, GET_USER, SERVER)
    assert users.parent_span_id == envoy.span_id
    # credits and mining are called in-process: no RPC, so their units of work hang straight
    # below users' span, in the same trace.
    units = [s for s in trace if s.name == "unit of work"]
    assert sorted(s.attributes["db.namespace"] for s in units) == ["credits", "mining", "users"]
    assert {s.parent_span_id for s in units} == {users.span_id}
    assert len(trace) == 5


def test_without_a_collector_a_rest_calls_log_lines_carry_the_trace_id_envoy_logged(
    json_logging_stack: LocalStack,
) -> None:
    wallet = new_wallet_address()
    with httpx.Client(base_url=json_logging_stack.rest_url, timeout=10.0) as rest:
        reply = rest.post("/v1/users", json={"wallet_address": wallet})
    assert reply.status_code == 200
    request_id = reply.headers["x-request-id"]
    (gateway_line,) = _wait_for_lines(json_logging_stack, "envoy", request_id)
    (service_line,) = _lines_of(json_logging_stack, "users", request_id)
    assert len(gateway_line["trace_id"]) == 32
    assert service_line["trace_id"] == gateway_line["trace_id"]


def _get_user_over_rest(stack: LocalStack) -> tuple[str, str]:
    """Create a user and read it back over REST: (wallet, the read's request id)."""
    wallet = new_wallet_address()
    with httpx.Client(base_url=stack.rest_url, timeout=10.0) as rest:
        assert rest.post("/v1/users", json={"wallet_address": wallet}).status_code == 200
        reply = rest.get(f"/v1/users/{wallet}")
    assert reply.status_code == 200
    return wallet, reply.headers["x-request-id"]


def _trace_of(
    collector: TraceCollector, request_id: str, spans: int
) -> tuple[CollectedSpan, list[CollectedSpan]]:
    """Envoy's span of the request, and every span of its trace, once `spans` have arrived."""

    def envoy_span(received: Sequence[CollectedSpan]) -> list[CollectedSpan]:
        return [s for s in received if s.attributes.get("guid:x-request-id") == request_id]

    def complete(received: Sequence[CollectedSpan]) -> bool:
        found = envoy_span(received)
        return bool(found) and len(_in_trace(received, found[0].trace_id)) >= spans

    received = collector.wait_for(complete, EXPORT_WAIT_SECONDS)
    (envoy,) = envoy_span(received)
    return envoy, _in_trace(received, envoy.trace_id)


def _in_trace(spans: Sequence[CollectedSpan], trace_id: str) -> list[CollectedSpan]:
    return [s for s in spans if s.trace_id == trace_id]


def _one(trace: Sequence[CollectedSpan], service: str, name: str, kind: int) -> CollectedSpan:
    (span,) = [s for s in trace if (s.service, s.name, s.kind) == (service, name, kind)]
    return span


def _lines_of(stack: LocalStack, process: str, request_id: str) -> list[dict[str, str]]:
    lines = [json.loads(line) for line in stack.log_of(process).splitlines() if request_id in line]
    return [line for line in lines if line.get("request_id") == request_id]


def _wait_for_lines(stack: LocalStack, process: str, request_id: str) -> list[dict[str, str]]:
    """Envoy writes its access log to the file every second."""
    deadline = time.monotonic() + 10.0
    while not (lines := _lines_of(stack, process, request_id)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return lines
