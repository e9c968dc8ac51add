"""A real Prometheus scraping `make run` (runner/run.py on its defaults) at exactly the metrics
ports its banner prints reads, after known traffic, the exact counts of that traffic: users and
mining behind the gateway and on the internal gRPC port, the front door's pages and chats
served by `make run`'s own reference node."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.known_traffic import front_door, paying_key, users_and_mining
from tests.e2e.make_run import Runner, running_make_run
from tests.e2e.prometheus import Prometheus, running_prometheus

PROCESSES = {"services", "gateway", "frontdoor"}  # every service in one process, Envoy, door


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Runner, Prometheus]]:
    work_dir = tmp_path_factory.mktemp("make-run-prometheus")
    with (
        running_make_run(work_dir / "data") as run,
        running_prometheus(work_dir / "prometheus", run.banner.metrics) as prometheus,
    ):
        yield run, prometheus


def test_prometheus_scrapes_every_metrics_port_the_banner_prints(
    scraped: tuple[Runner, Prometheus],
) -> None:
    run, prometheus = scraped
    chosen = {name: f"127.0.0.1:{port}" for name, port in run.ports.metrics.items()}

    assert run.banner.metrics == chosen
    assert prometheus.value_once("count(up == 1)", len(PROCESSES)) == len(PROCESSES)
    up = prometheus.query("up == 1")
    assert {(s["metric"]["job"], s["metric"]["instance"]) for s in up} == set(chosen.items())


def test_users_and_mining_traffic_is_counted_exactly(scraped: tuple[Runner, Prometheus]) -> None:
    run, prometheus = scraped

    expected = users_and_mining(run.banner.gateway, run.banner.grpc, run.internal)

    assert prometheus.values_once(expected) == expected


def test_the_front_door_s_pages_and_chats_on_make_run_s_node_are_counted_exactly(
    scraped: tuple[Runner, Prometheus],
) -> None:
    run, prometheus = scraped
    key = paying_key(run.banner.gateway, run.banner.grpc, run.internal, 1_000_000)

    # No /healthz of ours: make run's own polls before its banner count there.
    expected = front_door(run.banner.gateway, key)

    assert prometheus.values_once(expected) == expected
