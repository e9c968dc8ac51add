"""The OpenAI-compatible door through the real gateway: the official `openai` package and curl
list models and chat, streamed and whole, paid exactly from the key's wallet while the node's
owner earns its share; a node killed mid-answer charges only what arrived; bad requests are 4xx
in OpenAI's error shape."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from r3mes.credits.v1 import credits_pb2, credits_pb2_grpc
from r3mes.serving.v1 import serving_pb2, serving_pb2_grpc

from gateway.paths import ROOT
from gateway.settings import GatewaySettings
from runner.local_stack import LocalStack, running_stack
from runner.reference import ReferenceNode, register_node
from runner.run import REFERENCE_NETWORKS
from services.core.auth import INTERNAL_TOKEN_HEADER
from services.core.registry import SERVICES
from services.core.tls import client_context
from tests.e2e.conftest import INTERNAL_TOKEN
from tools.reference_node import DEFAULT_MODEL, WORDS
from tools.wallet import Wallet, first_api_key

CURL = shutil.which("curl") or "curl"
DOCUMENTED_BASE = "http://127.0.0.1:8080"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
SLOW_MODEL = "r3mes-slow"
DOOMED_MODEL, DOOMED_NODE = "r3mes-doomed", "doomed-node"  # killed by a test
SLOW = ("--delay", "0.3", "--tokens", "40")
ADAPTER_BASE, ADAPTER = "r3mes-base", "door-lora"
ADAPTER_PRICE = {"prompt": 3, "completion": 5}
CID = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
GRANT = 1_000_000
# The defaults of R3MES_SERVING_*: micro-credits per prompt and per completion token, share.
PROMPT_PRICE, COMPLETION_PRICE, SHARE_PERCENT = 1, 2, 70
SERVING = next(spec.name for spec in SERVICES if spec.proto_service.endswith("ServingService"))
CREDITS = next(spec.name for spec in SERVICES if spec.proto_service.endswith("CreditsService"))


@dataclass(frozen=True)
class Door:
    stack: LocalStack
    owner: str  # the reference node's wallet
    slow_owner: str  # the slow node's
    doomed_owner: str  # the node killed mid-answer's

    @property
    def base_url(self) -> str:
        return f"{self.stack.rest_url}/v1"


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    with running_stack(
        tmp_path_factory.mktemp("door"),
        internal_token=INTERNAL_TOKEN,
        extra_environment={
            "R3MES_SERVING_PRIVATE_NETWORKS": json.dumps(REFERENCE_NETWORKS),
            "R3MES_RATELIMIT_BACKEND": "off",
            # Registered once, never beating: fresh for the whole module.
            "R3MES_SERVING_NODE_OFFLINE_AFTER_SECONDS": "3600",
            "R3MES_SERVING_PRICES": json.dumps({ADAPTER: ADAPTER_PRICE}),
        },
    ) as stack:
        serving = stack.grpc_target(SERVING)
        owner = register_node(serving, INTERNAL_TOKEN, stack.start_reference_node()).wallet_address
        slow = stack.start_reference_node(*SLOW, "--model", SLOW_MODEL, name="slow-node")
        slow_owner = register_node(
            serving, INTERNAL_TOKEN, slow, models=[SLOW_MODEL]
        ).wallet_address
        doomed = stack.start_reference_node(*SLOW, "--model", DOOMED_MODEL, name=DOOMED_NODE)
        doomed_owner = register_node(
            serving, INTERNAL_TOKEN, doomed, models=[DOOMED_MODEL]
        ).wallet_address
        # A node serving an adapter: asked for by the adapter's name, as vLLM serves it.
        with grpc.insecure_channel(serving) as channel:
            serving_pb2_grpc.ServingServiceStub(channel).RegisterLoRA(
                serving_pb2.RegisterLoRARequest(
                    name=ADAPTER, base_model=ADAPTER_BASE, content_id=CID
                ),
                metadata=((INTERNAL_TOKEN_HEADER, INTERNAL_TOKEN),),
                timeout=5,
            )
        adapted = stack.start_reference_node(
            "--model", ADAPTER_BASE, "--model", ADAPTER, name="adapter-node"
        )
        register_node(serving, INTERNAL_TOKEN, adapted, [ADAPTER_BASE], [ADAPTER])
        yield Door(stack, owner, slow_owner, doomed_owner)


@dataclass(frozen=True)
class Payer:
    wallet: str
    key: str


def payer(door: Door, credits: int = GRANT) -> Payer:
    """A wallet with a key made from its signature and `credits` granted."""
    wallet = Wallet.new()
    with httpx.Client(base_url=door.stack.rest_url, timeout=10, verify=client_context()) as client:
        key = first_api_key(client, wallet, "door")
    if credits:
        with grpc.insecure_channel(door.stack.grpc_target(CREDITS)) as channel:
            credits_pb2_grpc.CreditsServiceStub(channel).GrantCredits(
                credits_pb2.GrantCreditsRequest(
                    wallet_address=wallet.address,
                    amount_micro_credits=credits,
                    idempotency_key=f"door-{wallet.address}",
                ),
                metadata=((INTERNAL_TOKEN_HEADER, INTERNAL_TOKEN),),
                timeout=5,
            )
    return Payer(wallet.address, key)


def balance(door: Door, wallet: str) -> int:
    reply = httpx.get(
        f"{door.base_url}/wallets/{wallet}/balance", timeout=10, verify=client_context()
    )
    return int(reply.json()["balance"]["available_micro_credits"])


def client(door: Door, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=door.base_url, api_key=key, max_retries=0, timeout=30)


def price(prompt_tokens: int, completion_tokens: int) -> int:
    return prompt_tokens * PROMPT_PRICE + completion_tokens * COMPLETION_PRICE


HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]


def test_the_openai_package_lists_the_models_fresh_nodes_serve(door: Door) -> None:
    models = client(door, payer(door, 0).key).models.list()

    assert [model.id for model in models] == sorted(
        [ADAPTER, ADAPTER_BASE, DEFAULT_MODEL, DOOMED_MODEL, SLOW_MODEL]
    )
    assert {model.owned_by for model in models} == {"r3mes"}
    assert {model.id: model.model_extra for model in models}[ADAPTER] == {"parent": ADAPTER_BASE}
    assert sum(bool(model.model_extra) for model in models) == 1


def test_an_adapter_is_asked_for_by_its_name_and_priced_as_itself(door: Door) -> None:
    paying = payer(door)

    answer = client(door, paying.key).chat.completions.create(
        model=ADAPTER, messages=HELLO, max_tokens=2
    )

    assert answer.model == ADAPTER
    assert answer.choices[0].message.content == "the network "
    charged = 2 * ADAPTER_PRICE["prompt"] + 2 * ADAPTER_PRICE["completion"]
    assert answer.usage is not None
    assert answer.usage.model_extra == {"charged_micro_credits": charged}
    assert balance(door, paying.wallet) == GRANT - charged


def test_a_whole_chat_is_charged_its_price_and_the_node_owner_earns_its_share(door: Door) -> None:
    paying = payer(door)
    owner_before = balance(door, door.owner)

    answer = client(door, paying.key).chat.completions.create(
        model=DEFAULT_MODEL, messages=HELLO, max_tokens=3
    )

    assert answer.object == "chat.completion"
    assert answer.model == DEFAULT_MODEL
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content == "the network answers "
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (2, 3)
    charged = price(2, 3)
    assert answer.usage.model_extra == {"charged_micro_credits": charged}
    assert balance(door, paying.wallet) == GRANT - charged
    assert balance(door, door.owner) == owner_before + charged * SHARE_PERCENT // 100


def test_a_streamed_chat_arrives_piece_by_piece_with_usage_last_when_asked(door: Door) -> None:
    paying = payer(door)
    owner_before = balance(door, door.owner)

    chunks = list(
        client(door, paying.key).chat.completions.create(
            model=DEFAULT_MODEL,
            messages=HELLO,
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert pieces == [f"{word} " for word in WORDS[:5]]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (2, 5)
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1
    assert balance(door, paying.wallet) == GRANT - price(2, 5)
    assert balance(door, door.owner) == owner_before + price(2, 5) * SHARE_PERCENT // 100


def test_curl_reads_the_stream_as_server_sent_events_ending_with_done(door: Door) -> None:
    paying = payer(door)
    body = {"model": DEFAULT_MODEL, "messages": HELLO, "max_tokens": 2, "stream": True}

    ran = subprocess.run(
        [
            CURL,
            "-sN",
            f"{door.base_url}/chat/completions",
            "-H",
            f"authorization: Bearer {paying.key}",
            "-H",
            "content-type: application/json",
            "-d",
            json.dumps(body),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )

    events = [line for line in ran.stdout.split("\n\n") if line]
    assert all(event.startswith("data: ") for event in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(event.removeprefix("data: ")) for event in events[:-1]]
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["the ", "network ", None]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert all("usage" not in c for c in chunks)


def test_curl_gets_a_whole_answer_when_stream_is_false(door: Door) -> None:
    paying = payer(door)
    body = {"model": DEFAULT_MODEL, "messages": HELLO, "max_tokens": 1, "stream": False}

    reply = httpx.post(
        f"{door.base_url}/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {paying.key}"},
        timeout=30,
        verify=client_context(),
    )

    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["choices"][0]["message"] == {"role": "assistant", "content": "the "}


def test_a_node_killed_mid_stream_charges_only_the_pieces_that_arrived(door: Door) -> None:
    paying = payer(door)
    owner_before = balance(door, door.doomed_owner)
    stream = client(door, paying.key).chat.completions.create(
        model=DOOMED_MODEL,
        messages=HELLO,
        max_tokens=40,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = []
    for chunk in stream:
        chunks.append(chunk)
        if len(chunks) == 3:
            os.kill(door.stack.pid_of(DOOMED_NODE), signal.SIGKILL)

    received = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert 3 <= len(received) < 40
    # OpenRouter's finish reason for an answer its provider cut short (the package's types
    # know only OpenAI's own).
    assert [str(c.choices[0].finish_reason) for c in chunks if c.choices][-1] == "error"
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (0, len(received))
    charged = price(0, len(received))
    assert usage.model_extra == {"charged_micro_credits": charged}
    assert balance(door, paying.wallet) == GRANT - charged
    assert balance(door, door.doomed_owner) == owner_before + charged * SHARE_PERCENT // 100


@pytest.mark.parametrize(
    "endpoint_url",
    ["http://169.254.169.254/", "http://localhost:8080/v1"],
    ids=["the cloud metadata address", "a name that resolves to 127.0.0.1"],
)
def test_a_node_at_a_private_address_is_refused_through_the_gateway(
    door: Door, endpoint_url: str
) -> None:
    owner = payer(door, 0)

    reply = httpx.post(
        f"{door.base_url}/wallets/{owner.wallet}/servingNodes",
        json={"endpoint_url": endpoint_url, "models": [DEFAULT_MODEL]},
        headers={"x-api-key": owner.key},
        timeout=10,
        verify=client_context(),
    )

    assert reply.status_code == 400, reply.text
    (violation,) = reply.json()["details"][1]["field_violations"]
    assert violation["field"] == "endpoint_url"


def post_chat(door: Door, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        f"{door.base_url}/chat/completions",
        content=body,
        headers={"content-type": "application/json", **headers},
        timeout=30,
        verify=client_context(),
    )


def chat_body(**fields: object) -> bytes:
    return json.dumps({"model": DEFAULT_MODEL, "messages": HELLO, **fields}).encode()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        (b'{"model": "r3mes-reference", "messages": [', 400, None, "invalid_json"),
        (b'["a list"]', 400, None, "invalid_json"),
        (b"\xff\xfe", 400, None, "invalid_json"),
        (chat_body()[:-1] + b', "temperature": NaN}', 400, None, "invalid_json"),
        (chat_body()[:-1] + b', "max_tokens": -Infinity}', 400, None, "invalid_json"),
        (chat_body(messages="hello"), 400, "messages", "invalid_value"),
        (chat_body(messages=[{"role": 1}]), 400, "messages.0", "invalid_value"),
        (
            chat_body(messages=[{"role": "user", "content": 5}]),
            400,
            "messages.0.content",
            "invalid_value",
        ),
        (chat_body(model=7), 400, "model", "invalid_value"),
        (chat_body(max_tokens="3"), 400, "max_tokens", "invalid_value"),
        (chat_body(max_tokens=True), 400, "max_tokens", "invalid_value"),
        (chat_body(max_tokens=10**30), 400, "max_tokens", "invalid_value"),
        (chat_body(max_tokens=5000), 400, "max_tokens", "invalid_argument"),
        (chat_body(max_completion_tokens=-1), 400, "max_completion_tokens", "invalid_value"),
        (chat_body(n=2), 400, "n", "invalid_value"),
        (chat_body(stream_options=[]), 400, "stream_options", "invalid_value"),
        (chat_body(model="no-such-model"), 404, "model", "model_not_found"),
        (chat_body(messages=[]), 400, "messages", "invalid_value"),
    ],
    ids=[
        "JSON cut short",
        "not an object",
        "not UTF-8",
        "NaN, which JSON has not",
        "Infinity, which JSON has not",
        "messages not a list",
        "a role not a string",
        "content not text",
        "model not a string",
        "max_tokens a string",
        "max_tokens a boolean",
        "max_tokens beyond any integer field",
        "max_tokens beyond the service's bound",
        "max_completion_tokens negative",
        "more than one answer",
        "stream_options not an object",
        "a model no node serves",
        "no messages",
    ],
)
def test_a_bad_request_is_a_4xx_in_openais_error_shape(
    door: Door, body: bytes, status: int, param: str | None, code: str, stream: bool
) -> None:
    paying = payer(door)
    if stream and body.startswith(b"{") and body.endswith(b"}"):
        body = body[:-1] + b', "stream": true}'

    reply = post_chat(door, body, {"authorization": f"Bearer {paying.key}"})

    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["param"], error["code"]) == (param, code)
    assert error["message"]
    assert balance(door, paying.wallet) == GRANT


def test_a_chat_without_a_key_is_401(door: Door) -> None:
    reply = post_chat(door, chat_body(), {})

    assert reply.status_code == 401, reply.text
    assert reply.json()["error"]["type"] == "authentication_error"


def test_a_revoked_key_is_401_with_its_reason(door: Door) -> None:
    paying = payer(door)
    as_key = {"x-api-key": paying.key}
    (key,) = httpx.get(
        f"{door.base_url}/wallets/{paying.wallet}/apikeys", headers=as_key, verify=client_context()
    ).json()["api_keys"]
    revoke = f"{door.base_url}/wallets/{paying.wallet}/apikeys/{key['key_id']}:revoke"
    assert httpx.post(revoke, json={}, headers=as_key, verify=client_context()).status_code == 200

    with pytest.raises(openai.AuthenticationError) as refused:
        client(door, paying.key).chat.completions.create(model=DEFAULT_MODEL, messages=HELLO)

    assert refused.value.status_code == 401
    assert refused.value.code == "api_key_revoked"
    assert balance(door, paying.wallet) == GRANT


def test_a_key_that_is_no_key_is_401_invalid_api_key(door: Door) -> None:
    with pytest.raises(openai.AuthenticationError) as refused:
        client(door, "r3mes_not-a-key").models.list()

    assert refused.value.code == "invalid_api_key"


def test_a_wallet_short_of_credits_gets_402_naming_price_and_balance(door: Door) -> None:
    poor = payer(door, 10)

    with pytest.raises(openai.APIStatusError) as refused:
        client(door, poor.key).chat.completions.create(
            model=DEFAULT_MODEL, messages=HELLO, max_tokens=100, stream=True
        )

    assert refused.value.status_code == 402
    assert refused.value.type == "insufficient_quota"
    assert refused.value.code == "insufficient_credits"
    assert "10" in refused.value.message
    assert balance(door, poor.wallet) == 10


def test_a_body_beyond_the_gateways_limit_is_413_in_openais_error_shape(door: Door) -> None:
    paying = payer(door)
    huge = [{"role": "user", "content": "x" * 70_000}]

    reply = post_chat(door, chat_body(messages=huge), {"authorization": f"Bearer {paying.key}"})

    assert reply.status_code == 413, reply.text
    assert reply.json() == {
        "error": {
            "message": "Payload Too Large",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


def test_the_openai_example_of_the_docs_lists_chats_and_streams(door: Door, tmp_path: Path) -> None:
    paying = payer(door)
    blocks = PYTHON_BLOCK.findall((ROOT / "docs" / "api.md").read_text())
    (block,) = [block for block in blocks if "from openai import" in block]
    script = tmp_path / "openai_example.py"
    script.write_text(block.replace(DOCUMENTED_BASE, door.stack.rest_url))

    ran = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "API_KEY": paying.key},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == [
        f"models: {sorted([ADAPTER, ADAPTER_BASE, DEFAULT_MODEL, DOOMED_MODEL, SLOW_MODEL])}",
        "answer: the network answers ",
        "piece: the ",
        "piece: network ",
        "piece: answers ",
        f"charged: {price(2, 3)}",
    ]
    assert balance(door, paying.wallet) == GRANT - 2 * price(2, 3)


def test_make_runs_reference_node_stays_fresh_while_make_run_beats_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    offline_after = 1.5  # beats every 0.5 s
    monkeypatch.setenv("R3MES_SERVING_NODE_OFFLINE_AFTER_SECONDS", str(offline_after))
    with running_stack(
        tmp_path,
        internal_token=INTERNAL_TOKEN,
        with_envoy=False,
        extra_environment={
            "R3MES_SERVING_PRIVATE_NETWORKS": json.dumps(REFERENCE_NETWORKS),
            "R3MES_SERVING_NODE_OFFLINE_AFTER_SECONDS": str(offline_after),
        },
    ) as stack:
        settings = GatewaySettings(
            targets={SERVING: stack.grpc_target(SERVING)}, internal_token=INTERNAL_TOKEN
        )
        node = ReferenceNode(settings, stack.start_reference_node())
        node.register()
        for _ in range(4):  # past the offline time, beating as make run does
            time.sleep(node.beat_interval_seconds)
            assert node.beat() is None
        fresh_while_beating = fresh_models(stack)
        time.sleep(offline_after + node.beat_interval_seconds)  # no beat any more

        assert fresh_while_beating == [DEFAULT_MODEL]
        assert fresh_models(stack) == []


def fresh_models(stack: LocalStack) -> list[str]:
    with grpc.insecure_channel(stack.grpc_target(SERVING)) as channel:
        page = serving_pb2_grpc.ServingServiceStub(channel).ListServingNodes(
            serving_pb2.ListServingNodesRequest(fresh_only=True), timeout=5
        )
    return [model for node in page.nodes for model in node.models]


def test_a_client_that_leaves_mid_stream_is_charged_only_what_was_sent_to_it(door: Door) -> None:
    paying = payer(door)
    body = {"model": SLOW_MODEL, "messages": HELLO, "max_tokens": 40, "stream": True}
    headers = {"authorization": f"Bearer {paying.key}"}

    with httpx.stream(
        "POST",
        f"{door.base_url}/chat/completions",
        json=body,
        headers=headers,
        timeout=30,
        verify=client_context(),
    ) as reply:
        assert reply.status_code == 200
        pieces: list[str] = []
        for line in reply.iter_lines():
            if line.startswith("data: "):
                pieces.append(line)
            if len(pieces) == 3:
                break
    # The door sees the closed connection at its next write, cancels, and serving settles.
    settled = until(lambda: reserved(door, paying.wallet) == 0)

    charged = GRANT - balance(door, paying.wallet)
    assert len(pieces) == 3
    assert settled
    assert price(0, 3) <= charged < price(0, 40)
    assert charged % COMPLETION_PRICE == 0  # completion pieces only, no prompt tokens


def reserved(door: Door, wallet: str) -> int:
    reply = httpx.get(
        f"{door.base_url}/wallets/{wallet}/balance", timeout=10, verify=client_context()
    )
    return int(reply.json()["balance"]["reserved_micro_credits"])


def until(condition: Callable[[], bool], attempts: int = 100) -> bool:
    for _ in range(attempts):
        if condition():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/chat/completions", "POST"),
        ("PUT", "/chat/completions", "POST"),
        ("POST", "/models", "GET"),
        ("DELETE", "/models", "GET"),
    ],
)
def test_a_door_path_asked_with_another_method_is_405_naming_the_one_it_takes(
    door: Door, method: str, path: str, allowed: str
) -> None:
    with httpx.Client(base_url=door.base_url, timeout=10, verify=client_context()) as http:
        refused = http.request(method, path, content=b'{"model": "x"}')
        # The same connection still serves the next request: the body was read, not left over.
        models = http.get("/models")

    assert refused.status_code == 405, refused.text
    assert refused.headers["allow"] == allowed
    assert refused.json()["error"]["code"] == "method_not_allowed"
    assert models.status_code == 200


async def test_sixty_four_streams_at_once_are_all_answered(door: Door) -> None:
    paying = payer(door)
    body = {"model": DEFAULT_MODEL, "messages": HELLO, "max_tokens": 2, "stream": True}
    limits = httpx.Limits(max_connections=64)
    headers = {"authorization": f"Bearer {paying.key}"}

    async with httpx.AsyncClient(
        limits=limits, headers=headers, timeout=60, verify=client_context()
    ) as http:
        replies = await asyncio.gather(
            *(http.post(f"{door.base_url}/chat/completions", json=body) for _ in range(64))
        )

    refused = [reply.text for reply in replies if reply.status_code != 200]
    assert refused == []
    assert all(reply.text.endswith("data: [DONE]\n\n") for reply in replies)
    assert balance(door, paying.wallet) == GRANT - 64 * price(2, 2)
