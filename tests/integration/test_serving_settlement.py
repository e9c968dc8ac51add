"""A chat whose capture credits does not answer, even retried: the client still gets its answer
and is told its charge, the hold stays, the failure is counted and logged, and the settlement
job captures the charge and pays the node's owner once credits answers again; or, should the
hold expire first, the hold goes back to the wallet whole. No credit lost, none taken twice, on
both engines (credits behind a proxy the test cuts). A capture credits made but whose answer
was lost is answered as it was when asked again: never captured twice."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial

import grpc
import pytest
from r3mes.serving.v1 import serving_pb2, serving_pb2_grpc

from services.core.background import PeriodicJob
from services.core.db import Database
from services.core.lifecycle import ServiceServer
from services.core.settings import Settings
from services.core.testing import metric_value, new_wallet_address, running_server
from services.serving import tables
from services.serving.server import create_server as create_serving_server
from services.serving.usecases import RESERVATION_TTL_SECONDS, SETTLEMENT_JOB
from tests.faults import CuttableProxy
from tests.integration.apikeys_support import INTERNAL
from tests.integration.credits_support import Credits, check_invariants, running_credits
from tools.reference_node import DEFAULT_MODEL, ReferenceNode

GRANT = 10_000
# Default prices: 1 micro-credit per prompt token, 2 per completion token; owners get 70 %.
PROMPT_BOUND = len(b"hello node") + 8
MOST = 1 * PROMPT_BOUND + 2 * 256  # the default max_tokens
CHARGE = 2 * 1 + 5 * 2  # the reference node's 2 prompt tokens and its 5 completion tokens
SHARE = CHARGE * 70 // 100
# The job asks again every few seconds in production; here the test runs it, boundedly.
JOB_RUNS, JOB_PAUSE_SECONDS = 100, 0.1


@dataclass
class Outage:
    """Serving, whose credits peer is reached through `proxy`; credits itself, reached directly."""

    credits: Credits
    proxy: CuttableProxy
    serving: serving_pb2_grpc.ServingServiceAsyncStub
    server: ServiceServer

    @property
    def job(self) -> PeriodicJob:
        (job,) = [job for job in self.server.jobs if job.name == SETTLEMENT_JOB]
        return job

    async def available_and_reserved(self, wallet: str) -> tuple[int, int]:
        balance = await self.credits.balance(wallet)
        return balance.available_micro_credits, balance.reserved_micro_credits

    async def settle_once_credits_answers(self) -> None:
        """Runs the settlement job until a run succeeds (the channel to credits reconnects
        after a back-off), at most JOB_RUNS times."""
        for _ in range(JOB_RUNS):
            if await self.job.run_once():
                return
            await asyncio.sleep(JOB_PAUSE_SECONDS)
        raise AssertionError("the settlement job never succeeded")


@pytest.fixture
async def outage(settings: Settings) -> AsyncIterator[Outage]:
    async with running_credits(settings) as credits:
        proxy = CuttableProxy("127.0.0.1", credits.port)
        await proxy.start()
        serving_settings = settings.with_targets(credits=f"127.0.0.1:{proxy.port}")
        create = partial(create_serving_server, clock=credits.clock)
        try:
            async with running_server(create, serving_settings, "serving") as (server, channel):
                yield Outage(credits, proxy, serving_pb2_grpc.ServingServiceStub(channel), server)
        finally:
            await proxy.cut()


def counts() -> dict[str, float]:
    return {
        "confirm failed": metric_value("r3mes_serving_settlement_failures_total", step="confirm"),
        "settled later": metric_value(
            "r3mes_serving_deferred_settlements_total", outcome="settled"
        ),
        "refused later": metric_value(
            "r3mes_serving_deferred_settlements_total", outcome="refused"
        ),
        "charged": metric_value("r3mes_serving_micro_credits_charged_total"),
    }


def added(before: dict[str, float]) -> dict[str, float]:
    return {what: value - before[what] for what, value in counts().items()}


async def chat_while_credits_goes_away(outage: Outage, client: str, owner: str) -> str:
    """A chat whose node answers 5 tokens; credits becomes unreachable for serving once the
    first token has arrived (the hold is made by then, the capture not yet). Its last chunk's
    charge; returns the chat's id."""
    node = ReferenceNode(tokens=5, delay_seconds=0.2)
    await node.start()
    try:
        await outage.serving.RegisterServingNode(
            serving_pb2.RegisterServingNodeRequest(
                wallet_address=owner, endpoint_url=node.url, models=[DEFAULT_MODEL]
            ),
            metadata=INTERNAL,
        )
        call = outage.serving.StreamChatCompletion(
            serving_pb2.StreamChatCompletionRequest(
                wallet_address=client,
                model=DEFAULT_MODEL,
                messages=[serving_pb2.ChatMessage(role="user", content="hello node")],
            ),
            metadata=INTERNAL,
        )
        chunks: list[serving_pb2.StreamChatCompletionResponse] = []
        while (chunk := await call.read()) is not grpc.aio.EOF:
            assert isinstance(chunk, serving_pb2.StreamChatCompletionResponse)
            chunks.append(chunk)
            if len(chunks) == 2:  # the hold made, its first token arrived, the capture not yet
                assert chunks[0].charge.reserved_micro_credits == MOST
                assert chunks[1].delta
                await outage.proxy.cut()
    finally:
        await node.stop()
    last = chunks[-1]
    assert last.finish_reason == serving_pb2.FINISH_REASON_STOP
    assert "".join(chunk.delta for chunk in chunks) == "the network answers with tokens "
    # What the chat costs, captured now or by the settlement job.
    assert last.charge.charged_micro_credits == CHARGE
    return str(last.id)


async def test_a_capture_credits_does_not_answer_is_kept_and_made_once_credits_answers(
    outage: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    client, owner = new_wallet_address(), new_wallet_address()
    await outage.credits.grant(client, GRANT)
    before = counts()

    with caplog.at_level(logging.ERROR, logger="services.serving.usecases"):
        chat_id = await chat_while_credits_goes_away(outage, client, owner)
        assert not await outage.job.run_once()  # credits still unreachable: the job fails

    # The hold stays whole meanwhile; nothing is charged, nothing paid.
    assert await outage.available_and_reserved(client) == (GRANT - MOST, MOST)
    assert await outage.available_and_reserved(owner) == (0, 0)
    assert added(before) == {
        "confirm failed": 1,
        "settled later": 0,
        "refused later": 0,
        "charged": 0,
    }
    assert metric_value("r3mes_serving_settlements_pending") == 1
    [logged] = [r for r in caplog.records if r.getMessage().startswith("chat settlement failed")]
    assert (logged.chat_id, logged.step, logged.charge) == (chat_id, "confirm", CHARGE)  # type: ignore[attr-defined]

    await outage.proxy.resume()
    await outage.settle_once_credits_answers()
    # Run again: nothing is left, nothing moves twice.
    assert await outage.job.run_once()

    assert await outage.available_and_reserved(client) == (GRANT - CHARGE, 0)
    assert await outage.available_and_reserved(owner) == (SHARE, 0)
    assert added(before) == {
        "confirm failed": 1,
        "settled later": 1,
        "refused later": 0,
        "charged": CHARGE,
    }
    assert metric_value("r3mes_serving_settlements_pending") == 0
    await check_invariants(outage.credits.settings, outage.credits.stub, outage.credits.clock())


async def test_a_hold_that_expires_before_credits_answers_goes_back_to_the_wallet_whole(
    outage: Outage,
) -> None:
    client, owner = new_wallet_address(), new_wallet_address()
    await outage.credits.grant(client, GRANT)
    before = counts()
    await chat_while_credits_goes_away(outage, client, owner)
    assert not await outage.job.run_once()

    outage.credits.clock.advance(seconds=RESERVATION_TTL_SECONDS)
    await outage.proxy.resume()
    await outage.settle_once_credits_answers()
    assert await outage.credits.sweep()

    # The answer was not paid for; the owner got nothing of a charge never captured.
    assert await outage.available_and_reserved(client) == (GRANT, 0)
    assert await outage.available_and_reserved(owner) == (0, 0)
    assert added(before) == {
        "confirm failed": 1,
        "settled later": 0,
        "refused later": 1,
        "charged": 0,
    }
    assert metric_value("r3mes_serving_settlements_pending") == 0
    await check_invariants(outage.credits.settings, outage.credits.stub, outage.credits.clock())


async def test_a_capture_whose_answer_was_lost_is_not_made_twice_and_the_owner_is_paid_once(
    outage: Outage,
) -> None:
    client, owner = new_wallet_address(), new_wallet_address()
    await outage.credits.grant(client, GRANT)
    chat_id = "chatcmpl-lost-answer"
    # The chat's hold, and its capture that credits made but whose answer never reached serving:
    # serving kept the settlement as not captured.
    hold = await outage.credits.reserve(client, MOST, ttl_seconds=RESERVATION_TTL_SECONDS)
    await outage.credits.confirm(hold.reservation.reservation_id, CHARGE, f"{chat_id}.confirm")
    database = Database.from_settings(outage.credits.settings, "serving")
    try:
        async with database.transaction() as connection:
            await connection.execute(
                tables.settlements.insert().values(
                    chat_id=chat_id,
                    reservation_id=hold.reservation.reservation_id,
                    charge=CHARGE,
                    prompt_tokens=2,
                    completion_tokens=5,
                    owner_wallet=owner,
                    share=SHARE,
                    create_time=outage.credits.clock(),
                    confirmed=False,
                )
            )
    finally:
        await database.dispose()
    before = counts()

    assert await outage.job.run_once()
    assert await outage.job.run_once()

    assert await outage.available_and_reserved(client) == (GRANT - CHARGE, 0)
    assert await outage.available_and_reserved(owner) == (SHARE, 0)
    assert added(before) == {
        "confirm failed": 0,
        "settled later": 1,
        "refused later": 0,
        "charged": CHARGE,
    }
    await check_invariants(outage.credits.settings, outage.credits.stub, outage.credits.clock())
