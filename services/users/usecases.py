"""The operations of the users service: plain values in, domain objects out, one unit of work
each. What the credits and mining services own is asked of them through `UsersPeers`, after the
unit of work has ended, so no transaction stays open while another service answers."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Protocol

from services.core.clock import Clock
from services.core.features import Features
from services.core.uow import UnitOfWork
from services.users.domain import (
    Balance,
    MiningStatus,
    MiningSummary,
    NetworkStats,
    User,
    UserProfile,
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


class UsersUseCases:
    def __init__(
        self,
        uow: UnitOfWork[UsersRepositories],
        peers: UsersPeers,
        clock: Clock,
        features: Features | None = None,
    ) -> None:
        self._uow = uow
        self._peers = peers
        self._clock = clock
        self._features = features or Features({})
        self._network_stats: tuple[datetime, NetworkStats] | None = None

    async def create_user(self, wallet_address: str) -> UserProfile:
        """Registers a wallet; a new user has no balance or mining status worth asking for."""
        new_user = User(wallet_address=wallet_address, created_at=self._clock())
        user = await self._uow.run(lambda repositories: repositories.users.add(new_user))
        return UserProfile(user)

    async def get_user(self, wallet_address: str) -> UserProfile:
        user = await self._uow.run(
            lambda repositories: repositories.users.get(wallet_address),
            read_only=True,
            one_statement=True,
        )
        balance, mining = await asyncio.gather(
            self._peers.balance(wallet_address), self._peers.mining_status(wallet_address)
        )
        return UserProfile(user, balance, mining)

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
