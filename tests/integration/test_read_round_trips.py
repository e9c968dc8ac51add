"""On PostgreSQL a read that is one statement is sent alone: no BEGIN, no COMMIT, one round trip.
A miner's status (its totals and the blocks it found) is one such statement."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from r3mes.mining.v1 import mining_pb2
from r3mes.users.v1 import users_pb2, users_pb2_grpc

from services.core.testing import FakeClock, new_wallet_address, running_server
from services.users.server import create_server
from tests.conftest import RUN_SUFFIX, settings_for
from tests.integration.mining_support import INTERNAL, block, record, running_mining, stats
from tests.integration.round_trips import statements_sent
from tests.integration.serving_support import chat, running_network


@pytest.mark.postgres
@pytest.mark.usefixtures("postgres_available")
async def test_reading_a_user_sends_one_statement_to_the_users_database(tmp_path: Path) -> None:
    settings = settings_for("postgres", tmp_path, suffix=f"{RUN_SUFFIX}_{uuid.uuid4().hex[:6]}")
    async with running_server(create_server, settings, "users") as (_, channel):
        stub = users_pb2_grpc.UsersServiceStub(channel)
        wallet = new_wallet_address()
        await stub.CreateUser(users_pb2.CreateUserRequest(wallet_address=wallet))
        await stub.GetUser(users_pb2.GetUserRequest(wallet_address=wallet))  # prepares it once

        with statements_sent() as sent:
            read = await stub.GetUser(users_pb2.GetUserRequest(wallet_address=wallet))

    assert read.user.wallet_address == wallet
    assert len(sent) == 1, sent


@pytest.mark.postgres
@pytest.mark.usefixtures("postgres_available")
async def test_a_miners_stats_with_its_blocks_found_are_one_statement(tmp_path: Path) -> None:
    settings = settings_for("postgres", tmp_path, suffix=f"{RUN_SUFFIX}_{uuid.uuid4().hex[:6]}")
    clock = FakeClock()
    async with running_mining(settings, clock) as mining:
        wallet = new_wallet_address()
        await record(mining, stats(wallet, "report-1"))
        await mining.stub.RecordBlock(block(1, wallet, block_time=clock()), metadata=INTERNAL)
        request = mining_pb2.GetMinerStatsRequest(wallet_address=wallet)
        await mining.stub.GetMinerStats(request)  # prepares it once

        with statements_sent() as sent:
            read = await mining.stub.GetMinerStats(request)

    assert read.stats.blocks_found == 1
    assert len(sent) == 1, sent


@pytest.mark.postgres
@pytest.mark.usefixtures("postgres_available")
async def test_a_chat_picks_its_nodes_in_one_statement_to_the_serving_database(
    tmp_path: Path,
) -> None:
    suffix = f"{RUN_SUFFIX}_{uuid.uuid4().hex[:6]}"
    async with running_network(settings_for("postgres", tmp_path, suffix=suffix)) as network:
        owner, client = await network.wallet(), await network.wallet(credits=10_000)
        await network.node(owner, tokens=2)
        await chat(network, client)  # prepares the statements once
        # A node registered since: what the process remembered of the nodes is read again.
        await network.node(owner, tokens=2)

        with statements_sent() as sent:
            answered = await chat(network, client)

    assert answered[-1].charge.charged_micro_credits == 2 * 1 + 2 * 2
    serving = [statement for statement in sent if f"serving{suffix}." in statement]
    assert len(serving) == 1, serving
