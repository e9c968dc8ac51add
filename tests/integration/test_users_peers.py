# mypy: disable-error-code="abstract"
# (the stubs mark every RPC abstract; a stand-in implements only those users asks for)
"""GetUser and GetNetworkStats ask credits and mining; what they cannot tell is left out.

Stand-ins for credits and mining run behind the real server stack (interceptor chain included)
on port 0, so each peer's failure (down, slow, NOT_FOUND) can be chosen; tests with the real
services are in test_credits_users.py and test_mining_users.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from r3mes.credits.v1 import credits_pb2, credits_pb2_grpc
from r3mes.mining.v1 import mining_pb2, mining_pb2_grpc
from r3mes.users.v1 import users_pb2, users_pb2_grpc

from services.core.clock import Clock, utc_now
from services.core.lifecycle import build_server, registration
from services.core.settings import ServiceName, Settings
from services.core.testing import FakeClock, new_wallet_address, running_server
from services.users.server import create_server
from services.users.usecases import NETWORK_STATS_CACHE
from tests.conftest import INTERNAL_TOKEN, settings_for

LAST_REPORT = Timestamp(seconds=1_767_225_600)  # 2026-01-01T00:00:00Z


@dataclass
class StandInCredits(credits_pb2_grpc.CreditsServiceServicer):
    delay_seconds: float = 0.0
    seen_metadata: list[dict[str, Any]] = field(default_factory=list)
    totals_asked: int = 0

    async def GetBalance(
        self, request: credits_pb2.GetBalanceRequest, context: Any
    ) -> credits_pb2.GetBalanceResponse:
        self.seen_metadata.append(dict(context.invocation_metadata()))
        await asyncio.sleep(self.delay_seconds)
        balance = credits_pb2.Balance(
            wallet_address=request.wallet_address,
            available_micro_credits=2_500_000,
            reserved_micro_credits=500_000,
            total_micro_credits=3_000_000,
        )
        return credits_pb2.GetBalanceResponse(balance=balance)

    async def GetCreditsTotal(
        self, request: credits_pb2.GetCreditsTotalRequest, context: Any
    ) -> credits_pb2.GetCreditsTotalResponse:
        self.totals_asked += 1
        return credits_pb2.GetCreditsTotalResponse(total_micro_credits=9_000_000_000_000_001)


@dataclass
class StandInMining(mining_pb2_grpc.MiningServiceServicer):
    miners: set[str] = field(default_factory=set)

    async def GetMinerStats(
        self, request: mining_pb2.GetMinerStatsRequest, context: Any
    ) -> mining_pb2.GetMinerStatsResponse:
        if request.wallet_address not in self.miners:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such miner")
        stats = mining_pb2.MinerStats(
            wallet_address=request.wallet_address, last_report_time=LAST_REPORT
        )
        return mining_pb2.GetMinerStatsResponse(stats=stats)

    async def GetNetworkSummary(
        self, request: mining_pb2.GetNetworkSummaryRequest, context: Any
    ) -> mining_pb2.GetNetworkSummaryResponse:
        return mining_pb2.GetNetworkSummaryResponse(active_miners=7, block_height=123_456)


STAND_IN_REGISTRATIONS: dict[str, tuple[Callable[[Any, grpc.aio.Server], None], Any]] = {
    "credits": (
        credits_pb2_grpc.add_CreditsServiceServicer_to_server,
        credits_pb2.DESCRIPTOR.services_by_name["CreditsService"],
    ),
    "mining": (
        mining_pb2_grpc.add_MiningServiceServicer_to_server,
        mining_pb2.DESCRIPTOR.services_by_name["MiningService"],
    ),
}


@asynccontextmanager
async def serving(settings: Settings, name: ServiceName, servicer: Any) -> AsyncIterator[str]:
    """Serve a stand-in behind the real server stack; yields its target."""
    add, service = STAND_IN_REGISTRATIONS[name]
    own_port = settings.with_ports(**{name: 0})
    server, port = build_server(own_port, name, [registration(add, servicer, service)])
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace_seconds=0.5)


@asynccontextmanager
async def users_with_peers(
    settings: Settings, credits: StandInCredits, mining: StandInMining, clock: Clock = utc_now
) -> AsyncIterator[users_pb2_grpc.UsersServiceAsyncStub]:
    async with (
        serving(settings, "credits", credits) as credits_target,
        serving(settings, "mining", mining) as mining_target,
    ):
        pointed = settings.with_targets(credits=credits_target, mining=mining_target)
        pointed = pointed.model_copy(update={"call_timeout_seconds": 0.5})
        users = partial(create_server, clock=clock)
        async with running_server(users, pointed, "users") as (_, channel):
            yield users_pb2_grpc.UsersServiceStub(channel)


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    return settings_for("sqlite", tmp_path, suffix="")


async def test_a_user_carries_the_balance_and_mining_status_its_peers_report(
    sqlite_settings: Settings,
) -> None:
    wallet = new_wallet_address()
    credits, mining = StandInCredits(), StandInMining(miners={wallet})
    async with users_with_peers(sqlite_settings, credits, mining) as users:
        await users.CreateUser(users_pb2.CreateUserRequest(wallet_address=wallet))
        user = (await users.GetUser(users_pb2.GetUserRequest(wallet_address=wallet))).user

    assert user.available_micro_credits == 2_500_000
    assert user.reserved_micro_credits == 500_000
    assert user.is_miner is True
    assert user.last_mining_time == LAST_REPORT


async def test_peers_are_asked_as_an_internal_caller_with_the_callers_request_id(
    sqlite_settings: Settings,
) -> None:
    wallet = new_wallet_address()
    credits = StandInCredits()
    async with users_with_peers(sqlite_settings, credits, StandInMining()) as users:
        await users.CreateUser(users_pb2.CreateUserRequest(wallet_address=wallet))
        await users.GetUser(
            users_pb2.GetUserRequest(wallet_address=wallet),
            metadata=(("x-request-id", "trace-me-42"),),
        )

    [seen] = credits.seen_metadata
    assert seen["x-r3mes-internal-token"] == INTERNAL_TOKEN
    assert seen["x-request-id"] == "trace-me-42"


async def test_a_wallet_that_never_mined_is_no_miner(sqlite_settings: Settings) -> None:
    wallet = new_wallet_address()
    async with users_with_peers(sqlite_settings, StandInCredits(), StandInMining()) as users:
        await users.CreateUser(users_pb2.CreateUserRequest(wallet_address=wallet))
        user = (await users.GetUser(users_pb2.GetUserRequest(wallet_address=wallet))).user

    assert user.HasField("is_miner")
    assert user.is_miner is False
    assert not user.HasField("last_mining_time")


async def test_a_peer_slower_than_the_deadline_costs_only_its_own_fields(
    sqlite_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    wallet = new_wallet_address()
    slow_credits = StandInCredits(delay_seconds=3.0)
    async with users_with_peers(sqlite_settings, slow_credits, StandInMining({wallet})) as users:
        await users.CreateUser(users_pb2.CreateUserRequest(wallet_address=wallet))
        user = (await users.GetUser(users_pb2.GetUserRequest(wallet_address=wallet))).user

    assert not user.HasField("available_micro_credits")
    assert not user.HasField("reserved_micro_credits")
    assert user.is_miner is True
    warned = [r for r in caplog.records if getattr(r, "peer", None) == "credits"]
    assert [getattr(r, "code", None) for r in warned] == ["DEADLINE_EXCEEDED"]


async def test_a_silent_peer_is_logged_when_it_stops_and_when_it_answers_again_not_per_call(
    sqlite_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    wallet = new_wallet_address()
    credits = StandInCredits(delay_seconds=3.0)
    caplog.set_level(logging.INFO, logger="services.users.peers")
    async with users_with_peers(sqlite_settings, credits, StandInMining({wallet})) as users:
        await users.CreateUser(users_pb2.CreateUserRequest(wallet_address=wallet))
        for _ in range(3):
            await users.GetUser(users_pb2.GetUserRequest(wallet_address=wallet))
        credits.delay_seconds = 0.0
        for _ in range(2):
            user = (await users.GetUser(users_pb2.GetUserRequest(wallet_address=wallet))).user

    assert user.available_micro_credits == 2_500_000
    about_credits = [
        (r.levelname, r.getMessage(), getattr(r, "unanswered_calls", None))
        for r in caplog.records
        if getattr(r, "peer", None) == "credits"
    ]
    assert about_credits == [
        (
            "WARNING",
            "peer stopped answering; its fields are left out until it answers again",
            None,
        ),
        ("INFO", "peer answers again", 3),
    ]


async def test_network_stats_combine_users_credits_and_mining(sqlite_settings: Settings) -> None:
    async with users_with_peers(sqlite_settings, StandInCredits(), StandInMining()) as users:
        for _ in range(2):
            wallet = new_wallet_address()
            await users.CreateUser(users_pb2.CreateUserRequest(wallet_address=wallet))
        stats = await users.GetNetworkStats(users_pb2.GetNetworkStatsRequest())

    assert stats.total_users == 2
    assert stats.total_micro_credits == 9_000_000_000_000_001
    assert stats.active_miners == 7
    assert stats.block_height == 123_456


async def test_network_stats_without_peers_report_only_what_users_knows(
    settings: Settings,
) -> None:
    async with running_server(create_server, settings, "users") as (_, channel):
        users = users_pb2_grpc.UsersServiceStub(channel)
        await users.CreateUser(users_pb2.CreateUserRequest(wallet_address=new_wallet_address()))
        stats = await users.GetNetworkStats(users_pb2.GetNetworkStatsRequest())

    assert stats.total_users == 1
    assert not stats.HasField("total_micro_credits")
    assert not stats.HasField("active_miners")
    assert not stats.HasField("block_height")


async def _stats_and_peer_asks(
    users: users_pb2_grpc.UsersServiceAsyncStub, credits: StandInCredits
) -> tuple[int, int]:
    """A new user, then GetNetworkStats: the users it reports, and how often credits was asked
    so far."""
    await users.CreateUser(users_pb2.CreateUserRequest(wallet_address=new_wallet_address()))
    stats = await users.GetNetworkStats(users_pb2.GetNetworkStatsRequest())
    return stats.total_users, credits.totals_asked


async def test_with_the_network_stats_cache_off_every_call_counts_afresh_and_asks_the_peers(
    sqlite_settings: Settings,
) -> None:
    credits = StandInCredits()
    async with users_with_peers(sqlite_settings, credits, StandInMining()) as users:
        seen = [await _stats_and_peer_asks(users, credits) for _ in range(3)]

    assert seen == [(1, 1), (2, 2), (3, 3)]


async def test_with_the_network_stats_cache_on_calls_within_5_s_share_one_answer(
    sqlite_settings: Settings,
) -> None:
    credits = StandInCredits()
    clock = FakeClock()
    flagged = sqlite_settings.model_copy(update={"features": {NETWORK_STATS_CACHE: True}})
    async with users_with_peers(flagged, credits, StandInMining(), clock) as users:
        seen = [await _stats_and_peer_asks(users, credits)]
        clock.advance(seconds=4.9)
        seen.append(await _stats_and_peer_asks(users, credits))
        clock.advance(seconds=0.1)
        seen.append(await _stats_and_peer_asks(users, credits))

    assert seen == [(1, 1), (1, 1), (3, 2)]


async def test_a_flag_flipped_in_the_features_file_steers_the_next_call_of_a_running_service(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    credits = StandInCredits()
    flags = tmp_path / "features.json"
    with_file = sqlite_settings.model_copy(update={"features_file": flags})
    async with users_with_peers(with_file, credits, StandInMining(), FakeClock()) as users:
        seen = [await _stats_and_peer_asks(users, credits)]
        flags.write_text(json.dumps({NETWORK_STATS_CACHE: True}))
        seen += [await _stats_and_peer_asks(users, credits) for _ in range(2)]
        flags.write_text(json.dumps({NETWORK_STATS_CACHE: False}))
        seen.append(await _stats_and_peer_asks(users, credits))

    assert seen == [(1, 1), (2, 2), (2, 2), (4, 3)]
