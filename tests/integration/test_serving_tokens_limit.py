"""Tokens per minute per wallet (the `tokens:` policies, like LiteLLM's TPM): a chat is admitted
while the wallet's token bucket is not overdrawn, and its answer's tokens are charged when it
ends, whether streamed or whole."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from r3mes.serving.v1 import serving_pb2

from services.core.settings import Settings
from tests.integration.rpc import failure_of
from tests.integration.serving_support import Network, chat, chat_request, running_network

# 10 tokens a minute: a chat of 2 prompt and 5 completion tokens (7) leaves 3, the next one is
# still admitted (the bucket is not overdrawn yet) and leaves it owing 4.
POLICIES = """
policies:
  credentials: 5/minute
  read: 30/minute
  write: 20/minute
  chat: 20/minute
  auth_failures: 10/minute
tokens:
  chat: 10/minute
default: write
internal: exempt
failed_authentication: auth_failures
"""


@pytest.fixture
async def network(settings: Settings, tmp_path: Path) -> AsyncIterator[Network]:
    policies = tmp_path / "policies.yaml"
    policies.write_text(POLICIES)
    limited = settings.model_copy(
        update={"ratelimit_backend": "memory", "ratelimit_policies_file": policies}
    )
    async with running_network(limited) as running:
        yield running


async def test_a_wallet_past_its_tokens_per_minute_is_refused_and_nothing_is_reserved(
    network: Network,
) -> None:
    owner, client = await network.wallet(), await network.wallet(credits=10_000)
    await network.node(owner, tokens=5)
    streamed = await chat(network, client)
    whole = await network.suite.serving.CreateChatCompletion(
        serving_pb2.CreateChatCompletionRequest(
            model=streamed[0].model, messages=chat_request().messages
        ),
        metadata=client.key,
    )
    balance = await network.balance(client)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await chat(network, client)
    refused = failure_of(raised.value)

    assert streamed[-1].usage.total_tokens == whole.usage.total_tokens == 7
    assert (refused.code, refused.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
    assert refused.message == (
        f"rate limit of wallet:{client.address} reached: 10 tokens per 60 s under policy "
        "chat_tokens"
    )
    assert await network.balance(client) == balance
    await network.ledger_is_exact()


async def test_another_wallet_keeps_its_own_tokens(network: Network) -> None:
    owner = await network.wallet()
    spender, other = await network.wallet(credits=10_000), await network.wallet(credits=10_000)
    await network.node(owner, tokens=5)
    await chat(network, spender)
    await chat(network, spender)

    answered = await chat(network, other)

    assert answered[-1].finish_reason == serving_pb2.FINISH_REASON_STOP
