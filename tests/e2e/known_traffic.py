"""Traffic whose every count is known, sent to a running suite (a test stack or `make run`), and
the PromQL queries with the exact values Prometheus must then read: users and mining behind the
gateway and on the internal gRPC port, and the front door's pages and chats."""

from __future__ import annotations

import grpc
import httpx
import openai
from r3mes.credits.v1 import credits_pb2, credits_pb2_grpc
from r3mes.mining.v1 import mining_pb2, mining_pb2_grpc

from services.core.testing import new_wallet_address
from services.core.tls import client_context
from tests.integration.mining_support import stats
from tools.reference_node import DEFAULT_MODEL
from tools.wallet import Wallet, first_api_key

Metadata = tuple[tuple[str, str], ...]
USERS = "r3mes.users.v1.UsersService"
# The defaults of R3MES_SERVING_*: micro-credits per prompt and per completion token.
PROMPT_PRICE, COMPLETION_PRICE = 1, 2


def users_and_mining(rest_url: str, grpc_target: str, internal: Metadata) -> dict[str, float]:
    """3 users created, 5 read, 1 missing; 2 mining reports sent twice (the second batch
    replayed). `grpc_target` reaches mining; the gateway at `rest_url` reaches users."""
    wallets = [new_wallet_address() for _ in range(3)]
    with httpx.Client(base_url=rest_url, timeout=10, verify=client_context()) as rest:
        for wallet in wallets:
            created = rest.post("/v1/users", json={"wallet_address": wallet})
            assert created.status_code == 200, created.text
        for wallet in [*wallets, wallets[0], wallets[1]]:
            assert rest.get(f"/v1/users/{wallet}").status_code == 200
        assert rest.get(f"/v1/users/{new_wallet_address()}").status_code == 404
    miner = new_wallet_address()
    batch = mining_pb2.BatchRecordMiningStatsRequest(
        requests=[stats(miner, "metrics-1", hashrate=1.0), stats(miner, "metrics-2", hashrate=2.0)]
    )
    with grpc.insecure_channel(grpc_target) as channel:
        mining = mining_pb2_grpc.MiningServiceStub(channel)
        mining.BatchRecordMiningStats(batch, metadata=internal, timeout=5)
        mining.BatchRecordMiningStats(batch, metadata=internal, timeout=5)  # no new report

    def handled(method: str, code: str) -> str:
        return (
            f'sum(grpc_server_handled_total{{grpc_service="{USERS}",'
            f'grpc_method="{method}",grpc_code="{code}"}})'
        )

    # Summed over every process: in one process, users' calls to credits are in-process and
    # counted there alike.
    return {
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


def paying_key(rest_url: str, credits_target: str, internal: Metadata, micro_credits: int) -> str:
    """The API key of a new wallet (made from its signature) granted `micro_credits` by an
    internal call to credits at `credits_target`."""
    wallet = Wallet.new()
    with httpx.Client(base_url=rest_url, timeout=10, verify=client_context()) as rest:
        key = first_api_key(rest, wallet, "prometheus")
    with grpc.insecure_channel(credits_target) as channel:
        credits_pb2_grpc.CreditsServiceStub(channel).GrantCredits(
            credits_pb2.GrantCreditsRequest(
                wallet_address=wallet.address,
                amount_micro_credits=micro_credits,
                idempotency_key=f"prometheus-{wallet.address}",
            ),
            metadata=internal,
            timeout=5,
        )
    return key


def _requests(route: str, code: str) -> str:
    return f'sum(r3mes_frontdoor_requests_total{{route="{route}",code="{code}"}})'


def front_door(rest_url: str, key: str, health_checks: int = 0) -> dict[str, float]:
    """`health_checks` of /healthz (none where the suite's own polls count there too), the start
    page, a missing asset, the models, and a whole and a streamed chat paid with `key`, all
    through the gateway at `rest_url` to its one serving node of DEFAULT_MODEL."""
    door = openai.OpenAI(base_url=f"{rest_url}/v1", api_key=key, max_retries=0, timeout=30)
    hello: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "user", "content": "hello there"}
    ]
    paths = ["/healthz"] * health_checks + ["/", "/docs/no-such-asset.js"]
    with httpx.Client(base_url=rest_url, timeout=10, verify=client_context()) as pages:
        statuses = [pages.get(path).status_code for path in paths]
    assert statuses == [200] * (health_checks + 1) + [404]
    assert [model.id for model in door.models.list()] == [DEFAULT_MODEL]
    whole = door.chat.completions.create(model=DEFAULT_MODEL, messages=hello, max_tokens=3)
    streamed = list(
        door.chat.completions.create(model=DEFAULT_MODEL, messages=hello, max_tokens=5, stream=True)
    )
    assert whole.usage is not None
    assert (whole.usage.prompt_tokens, whole.usage.completion_tokens) == (2, 3)
    assert [c.choices[0].finish_reason for c in streamed if c.choices][-1] == "length"
    return {
        **({_requests("/healthz", "200"): health_checks} if health_checks else {}),
        _requests("/", "200"): 1,
        _requests("other", "404"): 1,
        _requests("/v1/models", "200"): 1,
        _requests("/v1/chat/completions", "200"): 2,
        'sum(r3mes_frontdoor_request_duration_seconds_count{route="/v1/chat/completions"})': 2,
        "sum(r3mes_frontdoor_requests_in_flight)": 0,
        'sum(r3mes_frontdoor_chat_tokens_total{kind="prompt"})': 2 + 2,
        'sum(r3mes_frontdoor_chat_tokens_total{kind="completion"})': 3 + 5,
        "sum(r3mes_frontdoor_chat_micro_credits_charged_total)": (2 + 2) * PROMPT_PRICE
        + (3 + 5) * COMPLETION_PRICE,
    }
