"""The apikeys service's repositories in memory (services/apikeys/repository.py)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from services.apikeys.domain import APIKey, APIKeyNotFound, Challenge
from services.apikeys.repository import APIKeyRepository, APIKeysRepositories, ChallengeRepository
from services.core.errors import AlreadyExists
from services.core.pagination import Page, PageRequest
from tests.fakes.uow import FakeUnitOfWork, keyset_page


@dataclass
class APIKeysState:
    keys: dict[str, APIKey] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)  # secret digest: key id (unique)
    challenges: dict[str, Challenge] = field(default_factory=dict)


class FakeKeys(APIKeyRepository):
    def __init__(self, state: APIKeysState) -> None:
        self._state = state

    async def add(self, key: APIKey, secret_digest: str) -> APIKey:
        if key.key_id in self._state.keys or secret_digest in self._state.digests:
            raise AlreadyExists("the record already exists")
        self._state.keys[key.key_id] = key
        self._state.digests[secret_digest] = key.key_id
        return key

    async def by_digest(self, secret_digest: str) -> APIKey | None:
        key_id = self._state.digests.get(secret_digest)
        return None if key_id is None else self._state.keys[key_id]

    async def get(self, wallet_address: str, key_id: str) -> APIKey:
        key = self._state.keys.get(key_id)
        if key is None or key.wallet_address != wallet_address:
            raise APIKeyNotFound(key_id)
        return key

    async def lock_wallet(self, wallet_address: str) -> None:
        """Nothing to do: the fake's units of work already take turns."""

    async def count_active(self, wallet_address: str, now: datetime) -> int:
        return sum(
            1
            for key in self._state.keys.values()
            if key.wallet_address == wallet_address
            and key.revoke_time is None
            and (key.expire_time is None or key.expire_time > now)
        )

    async def page_of(self, wallet_address: str, page_request: PageRequest) -> Page[APIKey]:
        return keyset_page(
            (key for key in self._state.keys.values() if key.wallet_address == wallet_address),
            lambda key: (key.create_time, key.key_id),
            page_request.size,
            page_request.after,
        )

    async def revoke(self, wallet_address: str, key_id: str, now: datetime) -> APIKey:
        key = await self.get(wallet_address, key_id)
        if key.revoke_time is None:
            key = self._state.keys[key_id] = replace(key, revoke_time=now)
        return key

    async def remove(self, wallet_address: str, key_id: str) -> None:
        await self.get(wallet_address, key_id)
        del self._state.keys[key_id]
        self._state.digests = {d: k for d, k in self._state.digests.items() if k != key_id}

    async def record_uses(self, last_used: dict[str, datetime]) -> None:
        for key_id, moment in last_used.items():
            key = self._state.keys.get(key_id)
            if key is not None and (key.last_used_time is None or key.last_used_time < moment):
                self._state.keys[key_id] = replace(key, last_used_time=moment)


class FakeChallenges(ChallengeRepository):
    def __init__(self, state: APIKeysState) -> None:
        self._challenges = state.challenges

    async def add(self, challenge: Challenge) -> Challenge:
        if challenge.challenge_id in self._challenges:
            raise AlreadyExists("the record already exists")
        self._challenges[challenge.challenge_id] = challenge
        return challenge

    async def locked(self, challenge_id: str) -> Challenge | None:
        return self._challenges.get(challenge_id)

    async def mark_used(self, challenge_id: str) -> bool:
        challenge = self._challenges.get(challenge_id)
        if challenge is None or challenge.used:
            return False
        self._challenges[challenge_id] = replace(challenge, used=True)
        return True

    async def sweep_expired(self, before: datetime) -> int:
        old = [i for i, challenge in self._challenges.items() if challenge.expire_time < before]
        for challenge_id in old:
            del self._challenges[challenge_id]
        return len(old)


def apikeys_repositories(state: APIKeysState) -> APIKeysRepositories:
    return APIKeysRepositories(keys=FakeKeys(state), challenges=FakeChallenges(state))


def apikeys_unit_of_work() -> FakeUnitOfWork[APIKeysState, APIKeysRepositories]:
    return FakeUnitOfWork("apikeys", APIKeysState(), apikeys_repositories)
