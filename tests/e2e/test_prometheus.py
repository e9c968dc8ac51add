"""A real Prometheus scrapes every process of a running suite (all services in one process, as
`make run` starts them, or split one per process, as deploy/ runs them; Envoy and the front
door), and after known traffic its queries give the exact counts; Envoy's metrics listener
serves its statistics and nothing else of admin."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import httpx
import openai
import pytest
from r3mes.credits.v1 import credits_pb2, credits_pb2_grpc
from r3mes.mining.v1 import mining_pb2, mining_pb2_grpc

from runner.local_stack import LOOPBACK, LocalStack, running_stack
from runner.reference import register_node
from runner.run import REFERENCE_NETWORKS
from services.core.registry import NAMES, SERVICES
from services.core.testing import new_wallet_address
from tests.e2e.conftest import INTERNAL_TOKEN
from tests.e2e.prometheus import Prometheus, running_prometheus
from tests.integration.mining_support import stats
from tools.reference_node import DEFAULT_MODEL
from tools.wallet import Wallet, first_api_key

INTERNAL = (("x-r3mes-internal-token", INTERNAL_TOKEN),)
USERS = "r3mes.users.v1.UsersService"
SERVING = next(spec.name for spec in SERVICES if spec.proto_service.endswith("ServingService"))
CREDITS = next(spec.name for spec in SERVICES if spec.proto_service.endswith("CreditsService"))
# The defaults of R3MES_SERVING_*: micro-credits per prompt and per completion token.
PROMPT_PRICE, COMPLETION_PRICE = 1, 2


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


def paying_key(stack: LocalStack, micro_credits: int) -> str:
    """The API key of a new wallet (made from its signature) granted `micro_credits`."""
    wallet = Wallet.new()
    with httpx.Client(base_url=stack.rest_url, timeout=10) as rest:
        key = first_api_key(rest, wallet, "prometheus")
    with grpc.insecure_channel(stack.grpc_target(CREDITS)) as channel:
        credits_pb2_grpc.CreditsServiceStub(channel).GrantCredits(
            credits_pb2.GrantCreditsRequest(
                wallet_address=wallet.address,
                amount_micro_credits=micro_credits,
                idempotency_key=f"prometheus-{wallet.address}",
            ),
            metadata=INTERNAL,
            timeout=5,
        )
    return key


def test_the_front_door_counts_its_requests_by_route_and_status_and_the_chats_it_answered(
    scraped: tuple[LocalStack, Prometheus],
) -> None:
    stack, prometheus = scraped
    register_node(stack.grpc_target(SERVING), INTERNAL_TOKEN, stack.start_reference_node())
    door = openai.OpenAI(
        base_url=f"{stack.rest_url}/v1",
        api_key=paying_key(stack, 1_000_000),
        max_retries=0,
        timeout=30,
    )
    hello: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "user", "content": "hello there"}
    ]
    with httpx.Client(base_url=stack.rest_url, timeout=10) as pages:
        statuses = [pages.get(path).status_code for path in ("/healthz", "/healthz", "/")]
        statuses.append(pages.get("/docs/no-such-asset.js").status_code)
    assert statuses == [200, 200, 200, 404]
    assert [model.id for model in door.models.list()] == [DEFAULT_MODEL]
    whole = door.chat.completions.create(model=DEFAULT_MODEL, messages=hello, max_tokens=3)
    streamed = list(
        door.chat.completions.create(model=DEFAULT_MODEL, messages=hello, max_tokens=5, stream=True)
    )
    assert whole.usage is not None
    assert (whole.usage.prompt_tokens, whole.usage.completion_tokens) == (2, 3)
    assert [c.choices[0].finish_reason for c in streamed if c.choices][-1] == "length"

    def requests(route: str, code: str) -> str:
        return f'sum(r3mes_frontdoor_requests_total{{route="{route}",code="{code}"}})'

    expected = {
        requests("/healthz", "200"): 2,
        requests("/", "200"): 1,
        requests("other", "404"): 1,
        requests("/v1/models", "200"): 1,
        requests("/v1/chat/completions", "200"): 2,
        'sum(r3mes_frontdoor_request_duration_seconds_count{route="/v1/chat/completions"})': 2,
        "sum(r3mes_frontdoor_requests_in_flight)": 0,
        'sum(r3mes_frontdoor_chat_tokens_total{kind="prompt"})': 2 + 2,
        'sum(r3mes_frontdoor_chat_tokens_total{kind="completion"})': 3 + 5,
        "sum(r3mes_frontdoor_chat_micro_credits_charged_total)": (2 + 2) * PROMPT_PRICE
        + (3 + 5) * COMPLETION_PRICE,
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
