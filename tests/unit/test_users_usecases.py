"""The users use cases through an in-memory unit of work and stand-in peers: a profile carries
what its peers could tell, and leaves out (None, never zero) what a failing peer could not."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.core.errors import R3mesError
from services.core.testing import FakeClock
from services.users.domain import (
    Balance,
    MiningStatus,
    MiningSummary,
    NetworkStats,
    User,
    UserProfile,
)
from services.users.repository import UsersRepositories
from services.users.usecases import UsersUseCases
from tests.fakes.uow import FakeUnitOfWork
from tests.fakes.users import UsersState, users_unit_of_work

WALLET = "remes1alice"
Unit = FakeUnitOfWork[UsersState, UsersRepositories]


class Peers:
    """What credits and mining answer; None stands for a peer that failed or timed out."""

    def __init__(self) -> None:
        self.wallet_balance: Balance | None = Balance(7, 3)
        self.status: MiningStatus | None = MiningStatus(True, datetime(2026, 1, 14, tzinfo=UTC))
        self.total: int | None = 1_000
        self.summary: MiningSummary | None = MiningSummary(active_miners=2, block_height=99)
        self.asked: list[str] = []

    async def balance(self, wallet_address: str) -> Balance | None:
        self.asked.append(f"balance {wallet_address}")
        return self.wallet_balance

    async def mining_status(self, wallet_address: str) -> MiningStatus | None:
        self.asked.append(f"mining {wallet_address}")
        return self.status

    async def credits_total(self) -> int | None:
        return self.total

    async def mining_summary(self) -> MiningSummary | None:
        return self.summary


@pytest.fixture
def uow() -> Unit:
    return users_unit_of_work()


@pytest.fixture
def peers() -> Peers:
    return Peers()


@pytest.fixture
def use_cases(uow: Unit, peers: Peers, clock: FakeClock) -> UsersUseCases:
    return UsersUseCases(uow, peers, clock)


async def test_a_new_user_is_registered_at_the_clocks_time_without_asking_its_peers(
    use_cases: UsersUseCases, uow: Unit, peers: Peers, clock: FakeClock
) -> None:
    profile = await use_cases.create_user(WALLET)

    assert profile == UserProfile(User(WALLET, clock.now))
    assert uow.state.users == {WALLET: User(WALLET, clock.now)}
    assert peers.asked == []


async def test_a_wallet_registers_once(use_cases: UsersUseCases, clock: FakeClock) -> None:
    first = await use_cases.create_user(WALLET)
    clock.advance(hours=1)

    with pytest.raises(R3mesError) as raised:
        await use_cases.create_user(WALLET)

    assert raised.value.reason == "USER_ALREADY_EXISTS"
    assert (await use_cases.get_user(WALLET)).user == first.user


async def test_a_profile_carries_the_balance_and_mining_status_its_peers_tell(
    use_cases: UsersUseCases, peers: Peers
) -> None:
    await use_cases.create_user(WALLET)

    profile = await use_cases.get_user(WALLET)

    assert (profile.balance, profile.mining) == (peers.wallet_balance, peers.status)


@pytest.mark.parametrize("failing", ["credits", "mining", "both"])
async def test_a_profile_leaves_out_the_part_of_a_peer_that_failed(
    use_cases: UsersUseCases, peers: Peers, failing: str
) -> None:
    await use_cases.create_user(WALLET)
    expected_balance, expected_mining = peers.wallet_balance, peers.status
    if failing in ("credits", "both"):
        peers.wallet_balance = expected_balance = None
    if failing in ("mining", "both"):
        peers.status = expected_mining = None

    profile = await use_cases.get_user(WALLET)

    assert profile.user.wallet_address == WALLET
    assert (profile.balance, profile.mining) == (expected_balance, expected_mining)


async def test_an_unknown_wallet_is_not_found_and_its_peers_are_not_asked(
    use_cases: UsersUseCases, peers: Peers
) -> None:
    with pytest.raises(R3mesError) as raised:
        await use_cases.get_user(WALLET)

    assert raised.value.reason == "USER_NOT_FOUND"
    assert peers.asked == []


async def test_network_stats_count_users_and_leave_out_what_a_failing_peer_could_not_tell(
    use_cases: UsersUseCases, peers: Peers
) -> None:
    for wallet in ("remes1a", "remes1b", "remes1c"):
        await use_cases.create_user(wallet)
    whole = await use_cases.network_stats()
    peers.total = None

    without_credits = await use_cases.network_stats()

    assert whole == NetworkStats(3, 1_000, peers.summary)
    assert without_credits == NetworkStats(3, None, peers.summary)
