"""A chat is paid exactly: the price of what the client received, captured from a reservation of
the most it could cost, the rest released, the node's owner credited its share; whatever fails
and wherever, the ledger stays exact."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from r3mes.serving.v1 import serving_pb2, serving_pb2_grpc

from services.core.settings import Settings
from services.core.testing import metric_value, new_wallet_address, running_server
from services.serving.server import create_server as create_serving_server
from tests.integration.apikeys_support import INTERNAL
from tests.integration.rpc import failure_of
from tests.integration.serving_support import Network, chat, chat_request, running_network
from tools.reference_node import DEFAULT_MODEL, ReferenceNode

# Default prices: 1 micro-credit per prompt token, 2 per completion token; owners get 70 %.
PROMPT_BOUND = len(b"hello node") + 8  # one message: its bytes and the template's allowance
MOST = 1 * PROMPT_BOUND + 2 * 256  # default max_tokens


async def test_a_streamed_chat_charges_the_reported_usage_and_credits_the_node_owner_its_share(
    network: Network,
) -> None:
    owner, client = await network.wallet(), await network.wallet(credits=10_000)
    await network.node(owner, tokens=5)

    chunks = await chat(network, client)

    first, *pieces, last = chunks
    assert first.charge.reserved_micro_credits == MOST
    assert (
        first.charge.prompt_micro_credits_per_token,
        first.charge.completion_micro_credits_per_token,
    ) == (1, 2)
    assert "".join(p.delta for p in pieces) == "the network answers with tokens "
    assert last.finish_reason == serving_pb2.FINISH_REASON_STOP
    # The reference node counts 2 prompt tokens ("hello node") and reports 5 completion tokens.
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (2, 5)
    assert last.charge.charged_micro_credits == 2 * 1 + 5 * 2
    assert len({c.id for c in chunks}) == 1
    balance = await network.balance(client)
    assert (balance.available_micro_credits, balance.reserved_micro_credits) == (10_000 - 12, 0)
    assert (await network.balance(owner)).total_micro_credits == 12 * 70 // 100
    await network.ledger_is_exact()


SERVING_SERIES = {
    "served": ("r3mes_serving_tokens_served_total", {}),
    "prompt charged": ("r3mes_serving_tokens_charged_total", {"kind": "prompt"}),
    "completion charged": ("r3mes_serving_tokens_charged_total", {"kind": "completion"}),
    "micro-credits charged": ("r3mes_serving_micro_credits_charged_total", {}),
}


def serving_counts() -> dict[str, float]:
    return {what: metric_value(name, **labels) for what, (name, labels) in SERVING_SERIES.items()}


async def test_a_chat_adds_what_it_served_and_charged_to_the_services_series(
    network: Network,
) -> None:
    owner, client = await network.wallet(), await network.wallet(credits=10_000)
    await network.node(owner, tokens=5)
    before = serving_counts()

    await chat(network, client)

    added = {what: value - before[what] for what, value in serving_counts().items()}
    assert added == {
        "served": 5,
        "prompt charged": 2,
        "completion charged": 5,
        "micro-credits charged": 2 * 1 + 5 * 2,
    }


async def test_the_unary_form_answers_whole_and_charges_the_same(network: Network) -> None:
    owner, client = await network.wallet(), await network.wallet(credits=10_000)
    await network.node(owner, tokens=3)
    request = serving_pb2.CreateChatCompletionRequest(
        model="r3mes-reference",
        messages=[serving_pb2.ChatMessage(role="user", content="hello node")],
    )

    answer = await network.suite.serving.CreateChatCompletion(request, metadata=client.key)

    assert answer.content == "the network answers "
    assert answer.charge.charged_micro_credits == 2 + 3 * 2
    assert (await network.balance(client)).total_micro_credits == 10_000 - 8
    await network.ledger_is_exact()


async def test_max_tokens_bounds_the_reservation_and_the_charge(network: Network) -> None:
    owner, client = await network.wallet(), await network.wallet(credits=10_000)
    await network.node(owner, tokens=10)

    *_, last = await chat(network, client, max_tokens=4)

    assert last.finish_reason == serving_pb2.FINISH_REASON_LENGTH
    assert last.usage.completion_tokens == 4
    assert last.charge.reserved_micro_credits == PROMPT_BOUND + 4 * 2
    assert (await network.balance(client)).total_micro_credits == 10_000 - (2 + 4 * 2)
    await network.ledger_is_exact()


async def test_a_node_failing_before_its_first_token_is_passed_over_for_the_next(
    network: Network,
) -> None:
    owner, client = await network.wallet(), await network.wallet(credits=10_000)
    broken, _ = await network.node(owner, tokens=2, fail_before_first_token=True)
    healthy, healthy_id = await network.node(owner, tokens=2)
    # More loaded: the broken node, least loaded, is asked first.
    beat = serving_pb2.HeartbeatRequest(wallet_address=owner.address, node_id=healthy_id, load=50)
    await network.suite.serving.Heartbeat(beat, metadata=owner.key)

    *_, last = await chat(network, client)
    again = await chat(network, client)

    assert last.finish_reason == serving_pb2.FINISH_REASON_STOP
    assert last.charge.charged_micro_credits == 2 + 2 * 2
    # Skipped for the cooldown: the second chat does not ask the broken node again.
    assert (broken.requests, healthy.requests) == (1, 2)
    assert again[-1].charge.charged_micro_credits == 6
    assert (await network.balance(client)).total_micro_credits == 10_000 - 12
    await network.ledger_is_exact()


async def test_with_every_node_failing_before_the_first_token_nothing_is_charged(
    network: Network,
) -> None:
    owner, client = await network.wallet(), await network.wallet(credits=10_000)
    await network.node(owner, fail_before_first_token=True)
    await network.node(owner, fail_before_first_token=True)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await chat(network, client)

    failure = failure_of(refused.value)
    assert (failure.code, failure.reason) == (grpc.StatusCode.UNAVAILABLE, "NO_SERVING_NODES")
    balance = await network.balance(client)
    assert (balance.available_micro_credits, balance.reserved_micro_credits) == (10_000, 0)
    await network.ledger_is_exact()


async def test_a_node_dying_mid_stream_charges_only_the_tokens_received(network: Network) -> None:
    owner, client = await network.wallet(), await network.wallet(credits=10_000)
    await network.node(owner, tokens=10, fail_after=3)

    chunks = await chat(network, client)

    assert [c.delta for c in chunks[1:-1]] == ["the ", "network ", "answers "]
    last = chunks[-1]
    assert last.finish_reason == serving_pb2.FINISH_REASON_NODE_FAILURE
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (0, 3)
    assert last.charge.charged_micro_credits == 3 * 2
    assert (await network.balance(client)).total_micro_credits == 10_000 - 6
    assert (await network.balance(owner)).total_micro_credits == 6 * 70 // 100
    await network.ledger_is_exact()


async def test_a_client_leaving_mid_stream_is_charged_only_for_what_it_received(
    network: Network,
) -> None:
    owner, client = await network.wallet(), await network.wallet(credits=10_000)
    await network.node(owner, tokens=1000, delay_seconds=0.01)
    call = network.suite.serving.StreamChatCompletion(
        chat_request(max_tokens=1000), metadata=client.key
    )
    received = 0
    async for chunk in call:
        received += bool(chunk.delta)
        if received == 4:
            break
    call.cancel()

    balance = await network.balance(client)
    for _ in range(200):  # the settlement runs as the server notices the client left
        if not balance.reserved_micro_credits:
            break
        await asyncio.sleep(0.05)
        balance = await network.balance(client)
    # The server may have handed the transport a few pieces the client never read before it
    # saw the cancellation (more on a loaded machine): a handful, never the 1000 reserved.
    assert 4 * 2 <= 10_000 - balance.total_micro_credits <= 12 * 2
    await network.ledger_is_exact()


async def test_not_enough_credits_is_refused_naming_price_and_balance_and_nothing_is_reserved(
    network: Network,
) -> None:
    owner, client = await network.wallet(), await network.wallet(credits=100)
    node, _ = await network.node(owner)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await chat(network, client)

    failure = failure_of(refused.value)
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "INSUFFICIENT_CREDITS",
    )
    assert f"up to {MOST} micro-credits" in failure.message
    assert "100 micro-credits available" in failure.message
    assert node.requests == 0
    balance = await network.balance(client)
    assert (balance.available_micro_credits, balance.reserved_micro_credits) == (100, 0)
    await network.ledger_is_exact()


async def test_a_model_no_node_serves_is_not_found_and_costs_nothing(network: Network) -> None:
    client = await network.wallet(credits=10_000)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await chat(network, client)

    assert failure_of(refused.value).reason == "MODEL_NOT_SERVED"
    assert (await network.balance(client)).available_micro_credits == 10_000


async def test_a_hundred_concurrent_streams_charge_exactly(settings: Settings) -> None:
    # No rate limit, and room for a hundred holds and captures taking turns on one SQLite file.
    unlimited = settings.model_copy(
        update={"ratelimit_backend": "off", "call_timeout_seconds": 30.0, "db_retry_attempts": 20}
    )
    async with running_network(unlimited) as network:
        owner, client = await network.wallet(), await network.wallet(credits=1_000_000)
        for _ in range(3):
            await network.node(owner, tokens=5)

        answers = await asyncio.gather(*(chat(network, client) for _ in range(100)))

        assert {answer[-1].charge.charged_micro_credits for answer in answers} == {12}
        balance = await network.balance(client)
        assert (balance.total_micro_credits, balance.reserved_micro_credits) == (
            1_000_000 - 100 * 12,
            0,
        )
        assert (await network.balance(owner)).total_micro_credits == 100 * (12 * 70 // 100)
        await network.ledger_is_exact()


@pytest.mark.parametrize("topology", ["one-process", "split"])
async def test_the_chat_flow_is_the_same_in_one_process_and_split(
    settings: Settings, topology: str
) -> None:
    async with running_network(settings, topology) as network:
        owner, client = await network.wallet(), await network.wallet(credits=10_000)
        await network.node(owner, tokens=5)

        *_, last = await chat(network, client)

        assert last.charge.charged_micro_credits == 12
        assert (await network.balance(client)).total_micro_credits == 10_000 - 12
        assert (await network.balance(owner)).total_micro_credits == 12 * 70 // 100
        await network.ledger_is_exact()


async def test_credits_unreachable_refuses_the_chat_before_any_node_is_asked(
    settings: Settings,
) -> None:
    # Serving alone, its credits peer where nobody listens.
    async with running_server(create_serving_server, settings, "serving") as (_, channel):
        serving = serving_pb2_grpc.ServingServiceStub(channel)
        node = ReferenceNode()
        await node.start()
        try:
            owner = new_wallet_address()
            await serving.RegisterServingNode(
                serving_pb2.RegisterServingNodeRequest(
                    wallet_address=owner, endpoint_url=node.url, models=[DEFAULT_MODEL]
                ),
                metadata=INTERNAL,
            )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await serving.CreateChatCompletion(
                    serving_pb2.CreateChatCompletionRequest(
                        wallet_address=new_wallet_address(),
                        model=DEFAULT_MODEL,
                        messages=[serving_pb2.ChatMessage(role="user", content="hi")],
                    ),
                    metadata=INTERNAL,
                )
        finally:
            await node.stop()

    failure = failure_of(refused.value)
    assert (failure.code, failure.reason) == (grpc.StatusCode.UNAVAILABLE, "CREDITS_UNAVAILABLE")
    assert node.requests == 0
