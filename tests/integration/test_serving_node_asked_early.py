"""A wallet whose last hold left it enough has its node asked while the new hold is written
(services.serving.usecases.recent): the chat pays exactly as any other, a node that fails when
asked early is passed over, and a hold refused after all closes the node's answer and charges
nothing. A wallet not seen, or short at its last chat, is never asked for early."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from r3mes.credits.v1 import credits_pb2
from r3mes.serving.v1 import serving_pb2

from services.core.settings import Settings
from tests.integration.apikeys_support import INTERNAL
from tests.integration.credits_support import new_key
from tests.integration.rpc import failure_of
from tests.integration.serving_support import Network, Wallet, chat, running_network

RICH = 1_000_000
CHARGE = 2 + 2 * 2  # two prompt tokens, two completion tokens at the default prices


@pytest.fixture(params=["one-process", "split"])
async def network(settings: Settings, request: pytest.FixtureRequest) -> AsyncIterator[Network]:
    async with running_network(settings, request.param) as running:
        yield running


async def spend_all_but(network: Network, wallet: Wallet, left: int) -> None:
    balance = await network.balance(wallet)
    deduct = credits_pb2.DeductCreditsRequest(
        wallet_address=wallet.address,
        amount_micro_credits=balance.available_micro_credits - left,
        description="spent elsewhere",
        idempotency_key=new_key(),
    )
    await network.suite.credits.DeductCredits(deduct, metadata=INTERNAL)


async def test_a_hold_refused_after_the_node_was_asked_early_closes_its_answer_and_charges_nothing(
    network: Network,
) -> None:
    owner, client = await network.wallet(), await network.wallet(credits=RICH)
    node, _ = await network.node(owner, tokens=2)
    await chat(network, client)  # its hold left it far more than a chat costs
    await spend_all_but(network, client, left=100)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await chat(network, client)
    asked_early = node.requests
    with pytest.raises(grpc.aio.AioRpcError):
        await chat(network, client)

    failure = failure_of(refused.value)
    assert failure.reason == "INSUFFICIENT_CREDITS"
    assert "100 micro-credits available" in failure.message
    assert asked_early == 2, "the second chat's node was asked before its hold was refused"
    assert node.requests == 2, "refused once, the wallet's hold is asked for first again"
    balance = await network.balance(client)
    assert (balance.available_micro_credits, balance.reserved_micro_credits) == (100, 0)
    await network.ledger_is_exact()


async def test_a_node_asked_early_that_fails_is_passed_over_and_the_chat_charged_exactly(
    network: Network,
) -> None:
    owner, client = await network.wallet(), await network.wallet(credits=RICH)
    healthy, healthy_id = await network.node(owner, tokens=2)
    await chat(network, client)
    broken, _ = await network.node(owner, tokens=2, fail_before_first_token=True)
    # More loaded: the broken node, least loaded, is asked first.
    beat = serving_pb2.HeartbeatRequest(wallet_address=owner.address, node_id=healthy_id, load=50)
    await network.suite.serving.Heartbeat(beat, metadata=owner.key)

    *_, last = await chat(network, client)

    assert last.finish_reason == serving_pb2.FINISH_REASON_STOP
    assert last.charge.charged_micro_credits == CHARGE
    assert (broken.requests, healthy.requests) == (1, 2)
    assert (await network.balance(client)).total_micro_credits == RICH - 2 * CHARGE
    await network.ledger_is_exact()


async def test_every_node_failing_when_asked_early_refuses_the_chat_with_nothing_held(
    network: Network,
) -> None:
    owner, client = await network.wallet(), await network.wallet(credits=RICH)
    node, _ = await network.node(owner, tokens=2)
    await chat(network, client)
    node.fail_before_first_token = True

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await chat(network, client)

    failure = failure_of(refused.value)
    assert (failure.code, failure.reason) == (grpc.StatusCode.UNAVAILABLE, "NO_SERVING_NODES")
    balance = await network.balance(client)
    assert (balance.total_micro_credits, balance.reserved_micro_credits) == (RICH - CHARGE, 0)
    await network.ledger_is_exact()
