"""The operations of the users service: plain values in, domain objects out, one unit of work
each. What the credits and mining services own is asked of them through `UsersPeers`, after the
unit of work has ended, so no transaction stays open while another service answers; or, when
they run elsewhere, read from the read model their events keep (`ReadModel`): see
docs/architecture.md, "users' read model"."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from services.core.clock import Clock
from services.core.events import Event, EventSink, newest_per_key
from services.core.features import Features
from services.core.uow import UnitOfWork
from services.users.domain import (
    Balance,
    Known,
    MiningStatus,
    MiningSummary,
    NetworkStats,
    User,
    UserProfile,
    balance_of_event,
    mining_status_of_event,
)
from services.users.repository import UsersRepositories


class UsersPeers(Protocol):
    """What the users service asks of its peers; None means the peer could not tell."""

    async def balance(self, wallet_address: str) -> Balance | None: ...

    async def mining_status(self, wallet_address: str) -> MiningStatus | None: ...

    async def credits_total(self) -> int | None: ...

    async def mining_summary(self) -> MiningSummary | None: ...


# The feature flag of the network stats cache (docs/operations.md, "Feature flags").
NETWORK_STATS_CACHE = "users.network_stats_cache"
NETWORK_STATS_CACHE_TTL = timedelta(seconds=5)


StateT = TypeVar("StateT")
# Whether the read model is current enough to answer from now (its consumer read its streams
# within the staleness bound).
Freshness = Callable[[], bool]


class UsersUseCases:
    def __init__(
        self,
        uow: UnitOfWork[UsersRepositories],
        peers: UsersPeers,
        clock: Clock,
        features: Features | None = None,
        read_model: Freshness | None = None,
    ) -> None:
        """`read_model`: None to ask the peers on every GetUser (they are co-hosted, so the
        call is a function call); else GetUser reads the read model while this says it is
        fresh, and asks the peers while it is not."""
        self._uow = uow
        self._peers = peers
        self._clock = clock
        self._features = features or Features({})
        self._read_model = read_model
        self._network_stats: tuple[datetime, NetworkStats] | None = None

    async def create_user(self, wallet_address: str) -> UserProfile:
        """Registers a wallet; a new user has no balance or mining status worth asking for."""
        new_user = User(wallet_address=wallet_address, created_at=self._clock())
        user = await self._uow.run(lambda repositories: repositories.users.add(new_user))
        return UserProfile(user)

    async def get_user(self, wallet_address: str) -> UserProfile:
        if self._read_model is not None and self._read_model():
            return await self._known_user(wallet_address)
        user = await self._uow.run(
            lambda repositories: repositories.users.get(wallet_address),
            read_only=True,
            one_statement=True,
        )
        balance, mining = await asyncio.gather(
            self._peers.balance(wallet_address), self._peers.mining_status(wallet_address)
        )
        return UserProfile(user, balance, mining)

    async def _known_user(self, wallet_address: str) -> UserProfile:
        """From the read model; what it knows nothing of yet is asked of the peer once, and
        what the peer answers is kept (a peer that cannot answer leaves its fields out)."""
        known = await self._uow.run(
            lambda repositories: repositories.users.profile(wallet_address),
            read_only=True,
            one_statement=True,
        )
        if known.balance is not None and known.mining is not None:
            return known
        balance, mining = await asyncio.gather(
            _unless(known.balance, lambda: self._peers.balance(wallet_address)),
            _unless(known.mining, lambda: self._peers.mining_status(wallet_address)),
        )
        if balance is not None or mining is not None:
            await self._uow.run(lambda r: _seed(r, wallet_address, balance, mining))
        return UserProfile(known.user, known.balance or balance, known.mining or mining)

    async def network_stats(self) -> NetworkStats:
        """Behind NETWORK_STATS_CACHE, answered from the stats computed within the last
        NETWORK_STATS_CACHE_TTL: the network's figures are the most asked of all (every
        landing page) and cost a count of every user and a call to each peer."""
        if not self._features.enabled(NETWORK_STATS_CACHE):
            return await self._fresh_network_stats()
        now = self._clock()
        cached = self._network_stats
        if cached is not None and now - cached[0] < NETWORK_STATS_CACHE_TTL:
            return cached[1]
        stats = await self._fresh_network_stats()
        self._network_stats = (now, stats)
        return stats

    async def _fresh_network_stats(self) -> NetworkStats:
        total_users = await self._uow.run(
            # A count of every user: not a lone read for the event loop's thread on SQLite.
            lambda repositories: repositories.users.count(),
            read_only=True,
        )
        credits_total, mining = await asyncio.gather(
            self._peers.credits_total(), self._peers.mining_summary()
        )
        return NetworkStats(total_users, credits_total, mining)


async def _unless(
    known: StateT | None, ask: Callable[[], Awaitable[StateT | None]]
) -> StateT | None:
    """None when already known (nothing to seed), else what the peer answers."""
    return None if known is not None else await ask()


async def _seed(
    r: UsersRepositories, wallet_address: str, balance: Balance | None, mining: MiningStatus | None
) -> None:
    if balance is not None:
        await r.balances.seed(wallet_address, balance)
    if mining is not None:
        await r.mining_statuses.seed(wallet_address, mining)


class ReadModel(EventSink):
    """The read model as a consumer of credits' balance events and mining's miner events
    (services.core.event_stream.StreamConsumer): each batch applied with the stream's new
    position in one unit of work."""

    def __init__(
        self, uow: UnitOfWork[UsersRepositories], balances_stream: str, mining_stream: str
    ) -> None:
        self._uow = uow
        self._balances_stream = balances_stream
        self._mining_stream = mining_stream

    async def position(self, stream: str) -> str | None:
        return await self._uow.run(lambda r: r.positions.of(stream), read_only=True)

    async def apply(self, stream: str, events: Sequence[Event], position: str) -> None:
        newest = newest_per_key(events)
        if stream == self._balances_stream:
            balances = [_known(event, balance_of_event) for event in newest]
            await self._uow.run(lambda r: _applied(r, r.balances.apply(balances), stream, position))
        elif stream == self._mining_stream:
            statuses = [_known(event, mining_status_of_event) for event in newest]
            await self._uow.run(
                lambda r: _applied(r, r.mining_statuses.apply(statuses), stream, position)
            )
        else:
            raise ValueError(f"the read model reads no stream {stream}")

    async def restart(self, stream: str, position: str) -> None:
        async def forget(r: UsersRepositories) -> None:
            if stream == self._balances_stream:
                await r.balances.forget()
            else:
                await r.mining_statuses.forget()
            await r.positions.save(stream, position)

        await self._uow.run(forget)


def _known(event: Event, state_of: Callable[[Any], StateT]) -> Known[StateT]:
    return Known(event.key, event.sequence, state_of(event.payload))


async def _applied(
    r: UsersRepositories, applying: Awaitable[None], stream: str, position: str
) -> None:
    await applying
    await r.positions.save(stream, position)
