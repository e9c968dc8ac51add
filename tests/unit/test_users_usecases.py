"""The users use cases through an in-memory unit of work and stand-in peers: a profile carries
what its peers could tell, and leaves out (None, never zero) what a failing peer could not."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.core.errors import R3mesError
from services.core.testing import FakeClock
from services.users.domain import (
    Balance,
    Known,
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


class Freshness:
    """Whether the read model's consumer has read lately, as a test sets it."""

    def __init__(self) -> None:
        self.fresh = True

    def __call__(self) -> bool:
        return self.fresh


@pytest.fixture
def freshness() -> Freshness:
    return Freshness()


@pytest.fixture
def reading_model(uow: Unit, peers: Peers, clock: FakeClock, freshness: Freshness) -> UsersUseCases:
    return UsersUseCases(uow, peers, clock, read_model=freshness)


async def test_with_a_fresh_read_model_a_user_known_to_it_is_shown_without_asking_its_peers(
    reading_model: UsersUseCases, uow: Unit, peers: Peers, clock: FakeClock
) -> None:
    await reading_model.create_user(WALLET)
    last = datetime(2026, 1, 10, tzinfo=UTC)
    uow.state.balances[WALLET] = Known(WALLET, 4, Balance(11, 2))
    uow.state.mining_statuses[WALLET] = Known(WALLET, 9, MiningStatus(True, last))

    profile = await reading_model.get_user(WALLET)

    assert profile == UserProfile(User(WALLET, clock.now), Balance(11, 2), MiningStatus(True, last))
    assert peers.asked == []


async def test_what_the_read_model_does_not_know_is_asked_once_and_kept_at_version_zero(
    reading_model: UsersUseCases, uow: Unit, peers: Peers
) -> None:
    await reading_model.create_user(WALLET)
    uow.state.balances[WALLET] = Known(WALLET, 4, Balance(11, 2))

    first = await reading_model.get_user(WALLET)
    second = await reading_model.get_user(WALLET)

    assert first == second
    assert first.balance == Balance(11, 2)
    assert first.mining == peers.status
    assert peers.asked == [f"mining {WALLET}"]
    assert uow.state.mining_statuses[WALLET].version == 0


async def test_a_peer_that_fails_for_a_wallet_the_model_does_not_know_leaves_out_its_part(
    reading_model: UsersUseCases, uow: Unit, peers: Peers
) -> None:
    await reading_model.create_user(WALLET)
    peers.status = None

    profile = await reading_model.get_user(WALLET)

    assert profile.balance == Balance(7, 3)
    assert profile.mining is None
    assert WALLET not in uow.state.mining_statuses


async def test_a_read_model_that_is_not_fresh_is_not_read_the_peers_are_asked(
    reading_model: UsersUseCases, uow: Unit, peers: Peers, freshness: Freshness
) -> None:
    await reading_model.create_user(WALLET)
    uow.state.balances[WALLET] = Known(WALLET, 4, Balance(11, 2))
    freshness.fresh = False

    profile = await reading_model.get_user(WALLET)

    assert profile.balance == Balance(7, 3)
    assert sorted(peers.asked) == [f"balance {WALLET}", f"mining {WALLET}"]


async def test_an_unknown_wallet_is_not_found_from_the_read_model_either(
    reading_model: UsersUseCases, peers: Peers
) -> None:
    with pytest.raises(R3mesError) as refused:
        await reading_model.get_user(WALLET)

    assert refused.value.reason == "USER_NOT_FOUND"
    assert peers.asked == []
