"""The rollback drill (docs/operations.md, "Canary releases and rolling back"), run for real: a
split stack with a faulty second version of mining at 10 % canary weight, under a steady load
whose client follows the documented retry policy (clients/service-config.json); the error-ratio
alert fires in a real Prometheus; setting the weight to 0 ends the errors; no call is lost."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml

from gateway.canary import set_weight
from runner.local_stack import CanaryRelease, LocalStack, running_stack
from tests.e2e.conftest import INTERNAL_TOKEN
from tests.e2e.prometheus import ALERT_RULES, Prometheus, running_prometheus
from tests.e2e.standalone.test_canary import upstream_requests
from tests.e2e.steady_load import steady_load

MINING = "r3mes.mining.v1.MiningService"
ALERT = "R3mesErrorRatioHigh"
FIRING = f'ALERTS{{alertname="{ALERT}",alertstate="firing"}}'
FAULTY_MINING = CanaryRelease(
    "mining", weight=10, command=(sys.executable, "-m", "tests.e2e.faulty_release", "mining")
)
# Slow enough that a call losing all 5 attempts to the faulty tenth (1e-5 per call) stays
# unlikely over the drill's few hundred calls, fast enough for the alert's ratio.
CALLS_PER_SECOND = 25.0
CALLS_AFTER_ROLLBACK = 100


@pytest.fixture
def drill_rules(tmp_path: Path) -> Path:
    """deploy/'s rules, the error-ratio alert's `for` cut from minutes to seconds so the drill
    takes seconds; its expression and threshold are the deployed ones."""
    rules = yaml.safe_load(ALERT_RULES.read_text())
    [error_ratio] = [r for g in rules["groups"] for r in g["rules"] if r.get("alert") == ALERT]
    error_ratio["for"] = "3s"
    written = tmp_path / "alerts.yml"
    written.write_text(yaml.safe_dump(rules))
    return written


@pytest.fixture
def drill(tmp_path: Path, drill_rules: Path) -> Iterator[tuple[LocalStack, Prometheus]]:
    with (
        running_stack(
            tmp_path / "stack",
            internal_token=INTERNAL_TOKEN,
            topology="split",
            metrics=True,
            canary=FAULTY_MINING,
            extra_environment={"R3MES_RATELIMIT_BACKEND": "off"},
        ) as stack,
        running_prometheus(tmp_path / "prometheus", stack.metrics_targets, drill_rules) as prom,
    ):
        targets = len(stack.metrics_targets)
        assert prom.value_once("count(up == 1)", targets) == targets
        yield stack, prom


async def test_a_faulty_canary_fires_the_alert_and_weight_0_ends_its_errors_losing_no_call(
    drill: tuple[LocalStack, Prometheus],
) -> None:
    stack, prometheus = drill
    async with steady_load(
        stack.gateway_target, retries=True, calls_per_second=CALLS_PER_SECOND
    ) as load:
        firing = await asyncio.to_thread(prometheus.samples_once, FIRING)

        await asyncio.to_thread(set_weight, stack.admin, "mining", 0)
        await load.calls_after(0)  # the attempts sent before the rollback have ended
        faulty_served = upstream_requests(stack)["mining-canary"]
        await load.calls_after(CALLS_AFTER_ROLLBACK)
        faulty_served_later = upstream_requests(stack)["mining-canary"]

    unavailable = (
        f'sum(grpc_server_handled_total{{grpc_service="{MINING}",grpc_code="Unavailable"}})'
    )
    errors_seen = prometheus.value_once(unavailable, faulty_served)

    assert [alert["metric"]["grpc_service"] for alert in firing] == [MINING]
    # Every call the faulty version got failed, Prometheus saw each failure, and after the
    # rollback it got no call at all.
    assert faulty_served > 0
    assert errors_seen == faulty_served
    assert faulty_served_later == faulty_served
    # Each failure was retried per the policy and answered by the good version.
    assert load.codes() == {grpc.StatusCode.OK: load.count}
