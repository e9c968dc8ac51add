"""A real Prometheus scrapes every process of a running suite (all services in one process, as
`make run` starts them, or split one per process, as deploy/ runs them; Envoy and the front
door), and after known traffic its queries give the exact counts; Envoy's metrics listener
serves its statistics and nothing else of admin."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from runner.local_stack import LOOPBACK, LocalStack, running_stack
from runner.reference import register_node
from runner.run import REFERENCE_NETWORKS
from services.core.registry import NAMES, SERVICES
from services.core.tls import client_context
from tests.e2e.conftest import INTERNAL_TOKEN
from tests.e2e.known_traffic import front_door, paying_key, users_and_mining
from tests.e2e.prometheus import Prometheus, running_prometheus

INTERNAL = (("x-r3mes-internal-token", INTERNAL_TOKEN),)
SERVING = next(spec.name for spec in SERVICES if spec.proto_service.endswith("ServingService"))
CREDITS = next(spec.name for spec in SERVICES if spec.proto_service.endswith("CreditsService"))


PROCESSES = {
    "one-process": {"services", "gateway", "frontdoor"},
    "split": {*NAMES, "gateway", "frontdoor"},
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
            extra_environment={
                "R3MES_RATELIMIT_BACKEND": "off",
                # The reference node, for chats through the front door, listens on loopback.
                "R3MES_SERVING_PRIVATE_NETWORKS": json.dumps(REFERENCE_NETWORKS),
            },
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


def test_queries_after_known_traffic_give_its_exact_counts(
    scraped: tuple[LocalStack, Prometheus],
) -> None:
    stack, prometheus = scraped

    expected = users_and_mining(stack.rest_url, stack.grpc_target("mining"), INTERNAL)

    assert prometheus.values_once(expected) == expected


def test_the_front_door_counts_its_requests_by_route_and_status_and_the_chats_it_answered(
    scraped: tuple[LocalStack, Prometheus],
) -> None:
    stack, prometheus = scraped
    register_node(stack.grpc_target(SERVING), INTERNAL_TOKEN, stack.start_reference_node())
    key = paying_key(stack.rest_url, stack.grpc_target(CREDITS), INTERNAL, 1_000_000)

    expected = front_door(stack.rest_url, key, health_checks=2)

    assert prometheus.values_once(expected) == expected


def test_envoys_metrics_listener_answers_get_metrics_and_nothing_else_of_admin(
    scraped: tuple[LocalStack, Prometheus],
) -> None:
    stack, _ = scraped
    listener = f"http://{stack.metrics_targets['gateway']}"
    assert stack.metrics_targets["gateway"].startswith(LOOPBACK)

    metrics = httpx.get(f"{listener}/metrics", timeout=5, verify=client_context())
    refused = {
        ("GET", path): httpx.request(
            "GET", f"{listener}{path}", timeout=5, verify=client_context()
        ).status_code
        for path in ("/", "/stats", "/config_dump", "/ready", "/stats/prometheus")
    }
    refused["POST", "/metrics"] = httpx.post(
        f"{listener}/metrics", timeout=5, verify=client_context()
    ).status_code
    refused["POST", "/quitquitquit"] = httpx.post(
        f"{listener}/quitquitquit", timeout=5, verify=client_context()
    ).status_code

    assert metrics.status_code == 200
    assert "# TYPE envoy_cluster_upstream_rq_total counter" in metrics.text
    assert set(refused.values()) == {404}, refused
