"""The chain indexer against a small fake CometBFT RPC server on 127.0.0.1: it catches up,
says so in health and logs, survives the chain failing (HTTP 500, server down), recovers, and
after a restart asks for no block it already recorded."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from grpc_health.v1 import health_pb2
from r3mes.mining.v1 import mining_pb2

from services.core.settings import Settings
from services.core.testing import FakeClock, new_wallet_address
from tests.integration.mining_support import Mining, running_mining

GENESIS = datetime(2026, 1, 15, 11, 0, tzinfo=UTC)
PROPOSER = "5A0B1C2D3E4F5A0B1C2D3E4F5A0B1C2D3E4F5A0B"
STRANGER = "FFFF1C2D3E4F5A0B1C2D3E4F5A0B1C2D3E4F0000"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class FakeChain:
    """What the fake CometBFT answers: its height, who proposed which block, and failure."""

    height: int = 0
    strangers: set[int] = field(default_factory=set)
    failing: bool = False
    asked: list[int] = field(default_factory=list)

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        if self.failing:
            return 500, {"jsonrpc": "2.0", "id": -1, "error": {"code": -32603, "message": "boom"}}
        if path == "/status":
            return 200, {"result": {"sync_info": {"latest_block_height": str(self.height)}}}
        height = int(query["height"][0])
        self.asked.append(height)
        moment = GENESIS + timedelta(seconds=height)
        header = {
            "height": str(height),
            # Nanoseconds, as CometBFT writes them.
            "time": moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z",
            "proposer_address": STRANGER if height in self.strangers else PROPOSER,
        }
        block_id = {"hash": f"{height:064X}"}
        return 200, {"result": {"block_id": block_id, "block": {"header": header}}}


@contextmanager
def serving_chain(chain: FakeChain, port: int = 0) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            status, body = chain.answer(parts.path, parse_qs(parts.query))
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not await check():
        if loop.time() > deadline:
            raise AssertionError("the condition did not come true in time")
        await asyncio.sleep(0.02)


def point_the_indexer_at(monkeypatch: pytest.MonkeyPatch, url: str, wallet: str) -> None:
    """Mining's own settings (services/mining/settings.py), read when the service is built."""
    for name, value in {
        "CHAIN_RPC_URL": url,
        "CHAIN_POLL_INTERVAL_SECONDS": "0.05",
        "CHAIN_BLOCKS_PER_POLL": "2",
        "CHAIN_PROPOSER_WALLETS": json.dumps({PROPOSER: wallet}),
        "CHAIN_BLOCK_REWARD_MICRO_CREDITS": "2500000",
    }.items():
        monkeypatch.setenv(f"R3MES_{name}", value)


async def heights(mining: Mining) -> list[int]:
    listed = await mining.stub.ListBlocks(mining_pb2.ListBlocksRequest(page_size=100))
    return [b.height for b in listed.blocks]


@pytest.fixture
def chain() -> FakeChain:
    return FakeChain(height=5, strangers={3})


@pytest.fixture
async def indexed(
    settings: Settings, chain: FakeChain, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Mining, FakeChain, str]]:
    wallet = new_wallet_address()
    with serving_chain(chain) as url:
        point_the_indexer_at(monkeypatch, url, wallet)
        async with running_mining(settings, FakeClock()) as mining:
            yield mining, chain, wallet


async def test_the_indexer_catches_up_skipping_blocks_of_proposers_without_a_wallet(
    indexed: tuple[Mining, FakeChain, str], caplog: pytest.LogCaptureFixture
) -> None:
    mining, _, wallet = indexed
    caplog.set_level(logging.INFO, logger="services.mining.indexer")

    async def caught_up() -> bool:
        return await heights(mining) == [5, 4, 2, 1]

    await eventually(caught_up)
    listed = await mining.stub.ListBlocks(mining_pb2.ListBlocksRequest(page_size=1))
    newest = listed.blocks[0]
    assert newest.miner_wallet_address == wallet
    assert newest.block_hash == f"{5:064x}"
    assert newest.reward_micro_credits == 2_500_000
    assert newest.block_time.ToDatetime(tzinfo=UTC) == GENESIS + timedelta(seconds=5)

    assert _logged(caplog, "chain indexer caught up")
    assert _logged_count(caplog, "skipping blocks of a proposer without a wallet") == 1
    summary = await mining.stub.GetNetworkSummary(mining_pb2.GetNetworkSummaryRequest())
    assert summary.block_height == 5


async def test_the_indexer_fails_in_health_while_the_chain_answers_500_and_then_recovers(
    indexed: tuple[Mining, FakeChain, str], caplog: pytest.LogCaptureFixture
) -> None:
    mining, chain, _ = indexed
    await eventually(lambda: _has(mining, 5))
    chain.failing = True
    chain.height = 9
    await eventually(lambda: _indexer_is(mining, NOT_SERVING))
    # The service itself keeps serving while its indexer fails.
    assert await mining.health() == SERVING
    assert await heights(mining) == [5, 4, 2, 1]

    chain.failing = False
    await eventually(lambda: _indexer_is(mining, SERVING))
    await eventually(lambda: _has(mining, 9))
    assert await heights(mining) == [9, 8, 7, 6, 5, 4, 2, 1]
    assert _logged_count(caplog, "background job failed") == 1
    assert _logged(caplog, "chain indexer lagging")


async def test_the_indexer_survives_the_chain_going_down_and_a_restart_asks_for_nothing_twice(
    settings: Settings,
    chain: FakeChain,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wallet = new_wallet_address()
    with serving_chain(chain) as url:
        port = int(url.rsplit(":", 1)[1])
        point_the_indexer_at(monkeypatch, url, wallet)
        async with running_mining(settings, FakeClock()) as mining:
            await eventually(lambda: _has(mining, 5))
    # The chain is down now: the service starts and serves anyway, its indexer failing.
    chain.height = 7
    chain.asked.clear()
    async with running_mining(settings, FakeClock()) as mining:
        await eventually(lambda: _indexer_is(mining, NOT_SERVING))
        assert await mining.health() == SERVING
        assert await heights(mining) == [5, 4, 2, 1]
        with serving_chain(chain, port):
            await eventually(lambda: _has(mining, 7))
    # Resumed after the highest recorded block: no block it had was asked for again.
    assert chain.asked == [6, 7]
    monkeypatch.delenv("R3MES_CHAIN_RPC_URL")
    assert await _heights_after_restart(settings) == [7, 6, 5, 4, 2, 1]


async def _indexer_is(mining: Mining, status: int) -> bool:
    return await mining.health("mining.chain-indexer") == status


async def _has(mining: Mining, height: int) -> bool:
    return height in await heights(mining)


async def _heights_after_restart(settings: Settings) -> list[int]:
    async with running_mining(settings, FakeClock()) as mining:
        return await heights(mining)


def _logged(caplog: pytest.LogCaptureFixture, message: str) -> bool:
    return _logged_count(caplog, message) > 0


def _logged_count(caplog: pytest.LogCaptureFixture, message: str) -> int:
    return sum(1 for record in caplog.records if record.getMessage() == message)
