"""Every cross-service flow answers the same whether the services share one process (peers and
API keys asked in-process) or run one per process (over gRPC), on both storage engines."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import grpc
import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from r3mes.apikeys.v1 import apikeys_pb2
from r3mes.credits.v1 import credits_pb2
from r3mes.mining.v1 import mining_pb2
from r3mes.serving.v1 import serving_pb2
from r3mes.users.v1 import users_pb2

from services.core.errors import Unavailable
from services.core.registry import NAMES
from services.core.settings import Settings
from services.core.testing import FakeClock, new_wallet_address
from services.mining.usecases import MiningUseCases
from tests.integration.apikeys_support import INTERNAL, as_key, issue_key
from tests.integration.credits_support import CREDIT, new_key
from tests.integration.mining_support import block, stats, timestamp
from tests.integration.rpc import failure_of
from tests.integration.topologies import TOPOLOGIES, Suite, running_suite


@pytest.fixture(params=TOPOLOGIES)
async def suite(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Suite]:
    clock = FakeClock()
    async with running_suite(settings, request.param, clock) as running:
        yield running


async def grant(suite: Suite, wallet: str, amount: int) -> None:
    request = credits_pb2.GrantCreditsRequest(
        wallet_address=wallet, amount_micro_credits=amount, idempotency_key=new_key()
    )
    await suite.credits.GrantCredits(request, metadata=INTERNAL)


async def mine(suite: Suite, wallet: str, clock: FakeClock | None = None) -> None:
    report = stats(wallet, new_key(), observe_time=(clock or FakeClock()).now)
    await suite.mining.RecordMiningStats(report, metadata=INTERNAL)


async def test_a_user_shows_the_balance_credits_holds_and_the_mining_status_mining_holds(
    suite: Suite,
) -> None:
    miner, idle = new_wallet_address(), new_wallet_address()
    for wallet in (miner, idle):
        await suite.users.CreateUser(users_pb2.CreateUserRequest(wallet_address=wallet))
    await grant(suite, miner, 5 * CREDIT)
    hold = credits_pb2.ReserveCreditsRequest(
        wallet_address=miner, amount_micro_credits=CREDIT, idempotency_key=new_key()
    )
    await suite.credits.ReserveCredits(hold, metadata=INTERNAL)
    await mine(suite, miner)

    shown = (await suite.users.GetUser(users_pb2.GetUserRequest(wallet_address=miner))).user
    other = (await suite.users.GetUser(users_pb2.GetUserRequest(wallet_address=idle))).user

    assert (shown.available_micro_credits, shown.reserved_micro_credits) == (4 * CREDIT, CREDIT)
    assert shown.is_miner is True
    assert shown.last_mining_time == timestamp(FakeClock().now)
    # Known zero and known "not a miner" (mining said NOT_FOUND), not left out.
    assert (other.available_micro_credits, other.reserved_micro_credits) == (0, 0)
    assert other.HasField("is_miner")
    assert other.is_miner is False


async def test_network_stats_add_up_what_credits_and_mining_hold(suite: Suite) -> None:
    wallets = [new_wallet_address() for _ in range(3)]
    for wallet in wallets:
        await suite.users.CreateUser(users_pb2.CreateUserRequest(wallet_address=wallet))
        await grant(suite, wallet, 7)
    await mine(suite, wallets[0])

    network = await suite.users.GetNetworkStats(users_pb2.GetNetworkStatsRequest())

    assert network.total_users == 3
    assert network.total_micro_credits == 21
    assert network.active_miners == 1
    assert network.HasField("block_height")


@pytest.fixture(params=TOPOLOGIES)
async def suite_trusting_keys_briefly(
    request: pytest.FixtureRequest, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Suite]:
    """Split, another process learns of a revocation when its cached answer expires (without
    Redis), so its cache holds answers a microsecond here; in one process the revocation is
    seen at once, so the default TTL (seconds) is kept there."""
    if request.param == "split":
        monkeypatch.setenv("R3MES_APIKEYS_CACHE_TTL_SECONDS", "1e-6")
    async with running_suite(settings, request.param, FakeClock()) as running:
        yield running


async def test_an_api_key_works_at_every_service_and_once_revoked_at_none(
    suite_trusting_keys_briefly: Suite,
) -> None:
    suite = suite_trusting_keys_briefly
    wallet, other = new_wallet_address(), new_wallet_address()
    await suite.users.CreateUser(users_pb2.CreateUserRequest(wallet_address=wallet))
    issued = await issue_key(suite.apikeys, wallet)
    key = as_key(issued.secret)

    def calls() -> dict[str, object]:
        return {
            "users": suite.users.GetUser(
                users_pb2.GetUserRequest(wallet_address=wallet), metadata=key
            ),
            "apikeys": suite.apikeys.ListAPIKeys(
                apikeys_pb2.ListAPIKeysRequest(wallet_address=wallet), metadata=key
            ),
            "mining": suite.mining.GetNetworkSummary(
                mining_pb2.GetNetworkSummaryRequest(), metadata=key
            ),
            "credits": suite.credits.ListLedgerEntries(
                credits_pb2.ListLedgerEntriesRequest(wallet_address=wallet), metadata=key
            ),
            "serving": suite.serving.ListServingNodes(
                serving_pb2.ListServingNodesRequest(), metadata=key
            ),
        }

    for call in calls().values():
        await call  # type: ignore[misc]
    with pytest.raises(grpc.aio.AioRpcError) as wrong_wallet:
        await suite.credits.ListLedgerEntries(
            credits_pb2.ListLedgerEntriesRequest(wallet_address=other), metadata=key
        )
    await suite.apikeys.RevokeAPIKey(
        apikeys_pb2.RevokeAPIKeyRequest(wallet_address=wallet, key_id=issued.api_key.key_id),
        metadata=key,
    )
    refusals = {}
    for name, call in calls().items():
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call  # type: ignore[misc]
        refusals[name] = failure_of(refused.value)

    assert failure_of(wrong_wallet.value).reason == "WRONG_WALLET"
    assert {name: (f.code, f.reason) for name, f in refusals.items()} == dict.fromkeys(
        NAMES, (grpc.StatusCode.UNAUTHENTICATED, "API_KEY_REVOKED")
    )


async def test_a_peer_that_fails_costs_only_its_own_fields_in_either_topology(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    wallet = new_wallet_address()
    await suite.users.CreateUser(users_pb2.CreateUserRequest(wallet_address=wallet))
    await grant(suite, wallet, 3)

    async def down(*_: object) -> None:
        raise Unavailable("mining's storage is down")

    monkeypatch.setattr(MiningUseCases, "miner_stats", down)
    monkeypatch.setattr(MiningUseCases, "network_summary", down)
    user = (await suite.users.GetUser(users_pb2.GetUserRequest(wallet_address=wallet))).user
    network = await suite.users.GetNetworkStats(users_pb2.GetNetworkStatsRequest())

    assert user.available_micro_credits == 3
    assert not user.HasField("is_miner")
    assert not user.HasField("last_mining_time")
    assert network.total_micro_credits == 3
    assert not network.HasField("active_miners")
    assert not network.HasField("block_height")


def peer_calls() -> Counter[tuple[str, str, str]]:
    """grpc_client_handled_total as this process's /metrics page shows it, by (service, method,
    code): both topologies run here, so the users service's calls are counted in this registry."""
    text = generate_latest(REGISTRY).decode()
    return Counter(
        {
            (s.labels["grpc_service"], s.labels["grpc_method"], s.labels["grpc_code"]): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "grpc_client_handled_total"
        }
    )


async def test_a_failed_call_to_a_peer_is_counted_with_its_code_in_either_topology(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    wallet = new_wallet_address()
    await suite.users.CreateUser(users_pb2.CreateUserRequest(wallet_address=wallet))

    async def down(*_: object) -> None:
        raise Unavailable("mining's storage is down")

    async def broken(*_: object) -> None:
        raise RuntimeError("a bug in mining")

    monkeypatch.setattr(MiningUseCases, "miner_stats", down)
    monkeypatch.setattr(MiningUseCases, "network_summary", broken)
    before = peer_calls()
    await suite.users.GetUser(users_pb2.GetUserRequest(wallet_address=wallet))
    await suite.users.GetNetworkStats(users_pb2.GetNetworkStatsRequest())
    counted = peer_calls()
    counted.subtract(before)

    assert +counted == {
        ("r3mes.credits.v1.CreditsService", "GetBalance", "OK"): 1,
        ("r3mes.mining.v1.MiningService", "GetMinerStats", "Unavailable"): 1,
        ("r3mes.credits.v1.CreditsService", "GetCreditsTotal", "OK"): 1,
        ("r3mes.mining.v1.MiningService", "GetNetworkSummary", "Internal"): 1,
    }


async def test_reservations_confirmed_in_part_or_rolled_back_show_in_the_users_balance(
    suite: Suite,
) -> None:
    wallet = new_wallet_address()
    await suite.users.CreateUser(users_pb2.CreateUserRequest(wallet_address=wallet))
    await grant(suite, wallet, 10 * CREDIT)
    held = []
    for amount in (4 * CREDIT, 3 * CREDIT):
        reserve = credits_pb2.ReserveCreditsRequest(
            wallet_address=wallet, amount_micro_credits=amount, idempotency_key=new_key()
        )
        held.append((await suite.credits.ReserveCredits(reserve, metadata=INTERNAL)).reservation)
    while_held = (await suite.users.GetUser(users_pb2.GetUserRequest(wallet_address=wallet))).user

    confirm = credits_pb2.ConfirmReservationRequest(
        reservation_id=held[0].reservation_id,
        amount_micro_credits=CREDIT,
        idempotency_key=new_key(),
    )
    await suite.credits.ConfirmReservation(confirm, metadata=INTERNAL)
    rollback = credits_pb2.RollbackReservationRequest(
        reservation_id=held[1].reservation_id, idempotency_key=new_key()
    )
    await suite.credits.RollbackReservation(rollback, metadata=INTERNAL)
    settled = (await suite.users.GetUser(users_pb2.GetUserRequest(wallet_address=wallet))).user
    network = await suite.users.GetNetworkStats(users_pb2.GetNetworkStatsRequest())

    assert (while_held.available_micro_credits, while_held.reserved_micro_credits) == (
        3 * CREDIT,
        7 * CREDIT,
    )
    assert (settled.available_micro_credits, settled.reserved_micro_credits) == (9 * CREDIT, 0)
    assert network.total_micro_credits == 9 * CREDIT


async def test_mining_reports_and_blocks_show_in_the_users_status_and_the_network_stats(
    suite: Suite,
) -> None:
    miner, other = new_wallet_address(), new_wallet_address()
    for wallet in (miner, other):
        await suite.users.CreateUser(users_pb2.CreateUserRequest(wallet_address=wallet))
    before = (await suite.users.GetUser(users_pb2.GetUserRequest(wallet_address=miner))).user
    now = FakeClock().now
    for wallet in (miner, other):
        await mine(suite, wallet)
    for height in (1, 2, 3):
        recorded = block(height, miner, key=new_key(), block_time=now)
        await suite.mining.RecordBlock(recorded, metadata=INTERNAL)

    after = (await suite.users.GetUser(users_pb2.GetUserRequest(wallet_address=miner))).user
    network = await suite.users.GetNetworkStats(users_pb2.GetNetworkStatsRequest())

    assert before.is_miner is False
    assert after.is_miner is True
    assert after.last_mining_time == timestamp(now)
    assert (network.active_miners, network.block_height) == (2, 3)
