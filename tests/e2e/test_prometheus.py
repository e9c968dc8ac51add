"""A real Prometheus scrapes every process of a running suite (all services in one process, as
`make run` starts them, or split one per process, as deploy/ runs them; and Envoy), and after
known traffic its queries give the exact counts; Envoy's metrics listener serves its statistics
and nothing else of admin."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import httpx
import pytest
from r3mes.mining.v1 import mining_pb2, mining_pb2_grpc

from runner.local_stack import LOOPBACK, LocalStack, running_stack
from services.core.registry import NAMES
from services.core.testing import new_wallet_address
from tests.e2e.conftest import INTERNAL_TOKEN
from tests.e2e.prometheus import Prometheus, running_prometheus
from tests.integration.mining_support import stats

INTERNAL = (("x-r3mes-internal-token", INTERNAL_TOKEN),)
USERS = "r3mes.users.v1.UsersService"


PROCESSES = {
    "one-process": {"services", "gateway"},
    "split": {*NAMES, "gateway"},
}


@pytest.fixture(scope="module", params=["one-process", "split"])
def scraped(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[LocalStack, Prometheus]]:
    work_dir = tmp_path_factory.mktemp("prometheus")
    with (
        running_stack(
            work_dir / "stack",
            internal_token=INTERNAL_TOKEN,
            topology=request.param,
            metrics=True,
            extra_environment={"R3MES_RATELIMIT_BACKEND": "off"},
        ) as stack,
        running_prometheus(work_dir / "prometheus", stack.metrics_targets) as prometheus,
    ):
        yield stack, prometheus


def test_every_process_of_the_suite_is_a_target_that_prometheus_scrapes(
    scraped: tuple[LocalStack, Prometheus],
) -> None:
    stack, prometheus = scraped
    processes = PROCESSES[stack.topology]
    assert set(stack.metrics_targets) == processes

    assert prometheus.value_once("count(up == 1)", len(processes)) == len(processes)
    assert {s["metric"]["job"] for s in prometheus.query("up == 1")} == processes


async def test_queries_after_known_traffic_give_its_exact_counts(
    scraped: tuple[LocalStack, Prometheus],
) -> None:
    stack, prometheus = scraped
    wallets = [new_wallet_address() for _ in range(3)]
    async with httpx.AsyncClient(base_url=stack.rest_url, timeout=10) as rest:
        for wallet in wallets:
            created = await rest.post("/v1/users", json={"wallet_address": wallet})
            assert created.status_code == 200, created.text
        for wallet in [*wallets, wallets[0], wallets[1]]:
            assert (await rest.get(f"/v1/users/{wallet}")).status_code == 200
        assert (await rest.get(f"/v1/users/{new_wallet_address()}")).status_code == 404
    miner = new_wallet_address()
    batch = mining_pb2.BatchRecordMiningStatsRequest(
        requests=[stats(miner, "metrics-1", hashrate=1.0), stats(miner, "metrics-2", hashrate=2.0)]
    )
    async with grpc.aio.insecure_channel(stack.grpc_target("mining")) as channel:
        mining = mining_pb2_grpc.MiningServiceStub(channel)
        await mining.BatchRecordMiningStats(batch, metadata=INTERNAL)
        await mining.BatchRecordMiningStats(batch, metadata=INTERNAL)  # replayed: no new report

    def handled(method: str, code: str) -> str:
        return (
            f'sum(grpc_server_handled_total{{grpc_service="{USERS}",'
            f'grpc_method="{method}",grpc_code="{code}"}})'
        )

    # Summed over every process: in one process, users' calls to credits are in-process and
    # counted there alike.
    expected = {
        handled("CreateUser", "OK"): 3,
        handled("GetUser", "OK"): 5,
        handled("GetUser", "NotFound"): 1,
        'sum(grpc_server_started_total{grpc_method="GetUser"})': 6,
        'sum(grpc_server_handling_seconds_count{grpc_method="GetUser"})': 6,
        # users asks credits for the balance of each user it found.
        'sum(grpc_client_handled_total{grpc_method="GetBalance",grpc_code="OK"})': 5,
        "sum(r3mes_mining_reports_recorded_total)": 2,
        'sum(grpc_server_handled_total{grpc_method="BatchRecordMiningStats"})': 2,
        # Envoy's own count of the calls it sent to users, scraped from its metrics listener.
        'sum(envoy_cluster_upstream_rq_total{job="gateway",envoy_cluster_name="users"})': 9,
    }
    seen = {query: prometheus.value_once(query, count) for query, count in expected.items()}

    assert seen == expected


def test_envoys_metrics_listener_answers_get_metrics_and_nothing_else_of_admin(
    scraped: tuple[LocalStack, Prometheus],
) -> None:
    stack, _ = scraped
    listener = f"http://{stack.metrics_targets['gateway']}"
    assert stack.metrics_targets["gateway"].startswith(LOOPBACK)

    metrics = httpx.get(f"{listener}/metrics", timeout=5)
    refused = {
        ("GET", path): httpx.request("GET", f"{listener}{path}", timeout=5).status_code
        for path in ("/", "/stats", "/config_dump", "/ready", "/stats/prometheus")
    }
    refused["POST", "/metrics"] = httpx.post(f"{listener}/metrics", timeout=5).status_code
    refused["POST", "/quitquitquit"] = httpx.post(f"{listener}/quitquitquit", timeout=5).status_code

    assert metrics.status_code == 200
    assert "# TYPE envoy_cluster_upstream_rq_total counter" in metrics.text
    assert set(refused.values()) == {404}, refused
