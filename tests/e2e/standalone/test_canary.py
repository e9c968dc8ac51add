"""Canary releases through the gateway (R3MES_CANARIES): the canary gets the share of calls its
weight says, and a weight changed while calls flow (Envoy's runtime, through admin) moves the
next calls without failing any."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from urllib.parse import quote

import grpc
import pytest
from r3mes.mining.v1 import mining_pb2, mining_pb2_grpc

from gateway.admin import admin_request
from gateway.canary import set_weight
from runner.local_stack import CanaryRelease, LocalStack, running_stack
from tests.e2e.conftest import INTERNAL_TOKEN
from tests.e2e.steady_load import steady_load

CALLS = 40


@pytest.fixture(scope="module")
def canaried(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with running_stack(
        tmp_path_factory.mktemp("canary"),
        internal_token=INTERNAL_TOKEN,
        canary=CanaryRelease("mining", weight=0),
        extra_environment={"R3MES_RATELIMIT_BACKEND": "off"},
    ) as stack:
        yield stack


def upstream_requests(stack: LocalStack) -> dict[str, int]:
    """Envoy's count of the requests it sent to mining's clusters, by cluster."""
    pattern = quote(r"^cluster\.mining(-canary)?\.upstream_rq_total$")
    status, body = admin_request(stack.admin, "GET", f"/stats?filter={pattern}")
    assert status == 200, body
    counts = re.findall(r"^cluster\.(\S+)\.upstream_rq_total: (\d+)$", body, re.MULTILINE)
    return {cluster: int(count) for cluster, count in counts}


async def sent_by_cluster(stack: LocalStack, calls: int) -> dict[str, int]:
    """Make `calls` calls to mining through the gateway, each of which must succeed; where
    they went."""
    before = upstream_requests(stack)
    async with grpc.aio.insecure_channel(stack.gateway_target) as channel:
        mining = mining_pb2_grpc.MiningServiceStub(channel)
        for _ in range(calls):
            await mining.GetNetworkSummary(mining_pb2.GetNetworkSummaryRequest(), timeout=10)
    after = upstream_requests(stack)
    return {cluster: after[cluster] - before.get(cluster, 0) for cluster in after}


async def test_the_canary_gets_no_call_at_weight_0_every_call_at_100_and_none_again_at_0(
    canaried: LocalStack,
) -> None:
    at_start = await sent_by_cluster(canaried, CALLS)
    set_weight(canaried.admin, "mining", 100)
    promoted = await sent_by_cluster(canaried, CALLS)
    set_weight(canaried.admin, "mining", 0)
    rolled_back = await sent_by_cluster(canaried, CALLS)

    assert at_start == {"mining": CALLS, "mining-canary": 0}
    assert promoted == {"mining": 0, "mining-canary": CALLS}
    assert rolled_back == {"mining": CALLS, "mining-canary": 0}


async def test_weights_changed_under_a_steady_load_fail_no_call(canaried: LocalStack) -> None:
    before = upstream_requests(canaried)
    # Retries off: a call the change disturbed would show as its failure.
    async with steady_load(canaried.gateway_target, retries=False) as load:
        for weight in (10, 50, 100, 5, 0, 100, 0):
            # From a thread: the load's calls keep flowing while Envoy takes the change.
            await asyncio.to_thread(set_weight, canaried.admin, "mining", weight)
            await load.calls_after(CALLS)
    after = upstream_requests(canaried)

    assert load.codes() == {grpc.StatusCode.OK: load.count}
    # Both versions served part of it: the changes did take effect while it ran.
    assert after["mining-canary"] > before["mining-canary"]
    assert after["mining"] > before["mining"]


def test_a_weight_outside_0_to_100_is_refused_before_envoy_is_asked(
    canaried: LocalStack,
) -> None:
    with pytest.raises(ValueError, match="a weight is a percentage, 0 to 100, not 101"):
        set_weight(canaried.admin, "mining", 101)
