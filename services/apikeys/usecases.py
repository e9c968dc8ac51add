"""The operations of the apikeys service: plain values in, domain objects out.

A key's secret exists only here, between `new_api_key()` and the response that hands it over;
what is stored is its digest. Creating a key from a signature takes two units of work: the first
consumes the challenge (and commits, so a bad signature still spends it), the second stores the
key once the signature has been checked.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from services.apikeys import wallet_proof
from services.apikeys.domain import (
    UNKNOWN_KEY,
    APIKey,
    APIKeyLimitReached,
    APIKeyState,
    Challenge,
    ChallengeAlreadyUsed,
    ChallengeExpired,
    ChallengeNotFound,
    IssuedKey,
    PublicKeyMismatch,
    SignatureInvalid,
    Validation,
    challenge_message,
    secret_digest,
    validation_of,
)
from services.apikeys.repository import APIKeysRepositories
from services.core import validators
from services.core.clock import Clock
from services.core.errors import InvalidArgument
from services.core.pagination import Page, PageRequest
from services.core.uow import UnitOfWork

ID_BYTES = 16  # secrets.token_urlsafe: 128 bits, 22 characters
HINT_CHARACTERS = 4


class Withdrawals(Protocol):
    """Told of every key revoked or deleted, so that no cache keeps trusting it."""

    async def key_withdrawn(self, key_id: str) -> None: ...


@dataclass(frozen=True)
class KeyPolicy:
    max_active_per_wallet: int
    challenge_ttl: timedelta


def key_hint(secret: str) -> str:
    """`r3mes_` and the first characters of the body, then the key's last characters
    (`r3mes_AbCd...WxYz`): enough for an owner to tell keys apart, far too few to use it."""
    prefix = validators.API_KEY_PREFIX
    return f"{secret[: len(prefix) + HINT_CHARACTERS]}...{secret[-HINT_CHARACTERS:]}"


class UsageLog:
    """Last uses of keys, kept in memory and written in batches, so that the hot path
    (ValidateAPIKey) never writes to the database."""

    def __init__(self) -> None:
        self._last_used: dict[str, datetime] = {}

    def touch(self, key_id: str, moment: datetime) -> None:
        known = self._last_used.get(key_id)
        if known is None or known < moment:
            self._last_used[key_id] = moment

    def take(self) -> dict[str, datetime]:
        taken, self._last_used = self._last_used, {}
        return taken

    def give_back(self, batch: dict[str, datetime]) -> None:
        for key_id, moment in batch.items():
            self.touch(key_id, moment)


class APIKeysUseCases:
    def __init__(
        self,
        uow: UnitOfWork[APIKeysRepositories],
        clock: Clock,
        policy: KeyPolicy,
        withdrawals: Withdrawals,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._policy = policy
        self._withdrawals = withdrawals
        self.usage = UsageLog()

    async def create_key(self, wallet: str, name: str, expires_days: int | None) -> IssuedKey:
        return await self._issue(wallet, name, expires_days, self._clock())

    async def create_challenge(self, wallet: str) -> Challenge:
        now = self._clock()
        expire_time = now + self._policy.challenge_ttl
        nonce = secrets.token_urlsafe(ID_BYTES)
        challenge = Challenge(
            challenge_id=secrets.token_urlsafe(ID_BYTES),
            wallet_address=wallet,
            message=challenge_message(wallet, nonce, expire_time),
            create_time=now,
            expire_time=expire_time,
        )
        return await self._uow.run(lambda repositories: repositories.challenges.add(challenge))

    async def create_key_with_signature(
        self,
        wallet: str,
        challenge_id: str,
        pub_key: bytes,
        signature: bytes,
        name: str,
        expires_days: int | None,
    ) -> IssuedKey:
        if not wallet_proof.is_public_key(pub_key):
            raise InvalidArgument.for_field(
                "pub_key", "must be a 33-byte compressed secp256k1 public key"
            )
        if len(signature) != wallet_proof.SIGNATURE_BYTES:
            raise InvalidArgument.for_field("signature", "must be 64 bytes (r||s)")
        now = self._clock()
        challenge = await self._uow.run(
            lambda repositories: _consume(repositories, wallet, challenge_id, now)
        )
        if wallet_proof.account_of(pub_key) != validators.wallet_payload(wallet):
            raise PublicKeyMismatch()
        signed = challenge.message.encode()
        if not wallet_proof.verify_sign_arbitrary(wallet, signed, pub_key, signature):
            raise SignatureInvalid()
        return await self._issue(wallet, name, expires_days, now)

    async def validate(self, secret: str) -> Validation:
        try:
            validators.api_key(secret)
        except validators.InvalidValue:
            return UNKNOWN_KEY  # refused by its checksum, without a query
        digest = secret_digest(secret)
        key = await self._uow.run(
            lambda repositories: repositories.keys.by_digest(digest), read_only=True
        )
        if key is None:
            return UNKNOWN_KEY
        now = self._clock()
        validation = validation_of(key, now)
        if validation.state is APIKeyState.ACTIVE:
            self.usage.touch(key.key_id, now)
        return validation

    async def list_keys(self, wallet: str, page_request: PageRequest) -> Page[APIKey]:
        return await self._uow.run(
            lambda repositories: repositories.keys.page_of(wallet, page_request), read_only=True
        )

    async def revoke_key(self, wallet: str, key_id: str) -> APIKey:
        now = self._clock()
        key = await self._uow.run(
            lambda repositories: repositories.keys.revoke(wallet, key_id, now)
        )
        await self._withdrawals.key_withdrawn(key_id)
        return key

    async def delete_key(self, wallet: str, key_id: str) -> None:
        await self._uow.run(lambda repositories: repositories.keys.remove(wallet, key_id))
        await self._withdrawals.key_withdrawn(key_id)

    async def flush_usage(self) -> int:
        """Write the last uses gathered since the previous flush; kept for the next on failure."""
        batch = self.usage.take()
        if not batch:
            return 0
        try:
            await self._uow.run(lambda repositories: repositories.keys.record_uses(batch))
        except BaseException:
            self.usage.give_back(batch)
            raise
        return len(batch)

    async def sweep_challenges(self) -> int:
        """Challenges past their expiry can only be refused; a day later they are dropped."""
        before = self._clock() - timedelta(days=1)
        return await self._uow.run(
            lambda repositories: repositories.challenges.sweep_expired(before)
        )

    async def _issue(
        self, wallet: str, name: str, expires_days: int | None, now: datetime
    ) -> IssuedKey:
        secret = validators.new_api_key()
        key = APIKey(
            key_id=secrets.token_urlsafe(ID_BYTES),
            wallet_address=wallet,
            name=name,
            key_prefix=key_hint(secret),
            create_time=now,
            expire_time=None if expires_days is None else now + timedelta(days=expires_days),
        )
        limit = self._policy.max_active_per_wallet

        async for attempt in self._uow.attempts():
            async with attempt as r:
                await r.keys.lock_wallet(wallet)
                if await r.keys.count_active(wallet, now) >= limit:
                    raise APIKeyLimitReached(wallet, limit)
                stored = await r.keys.add(key, secret_digest(secret))
        return IssuedKey(stored, secret)


async def _consume(
    repositories: APIKeysRepositories, wallet: str, challenge_id: str, now: datetime
) -> Challenge:
    """Spend a challenge of this wallet, or say why it cannot be spent. A challenge of another
    wallet is not found (and stays unspent): its existence is nobody else's business."""
    challenge = await repositories.challenges.locked(challenge_id)
    if challenge is None or challenge.wallet_address != wallet:
        raise ChallengeNotFound()
    if challenge.used:
        raise ChallengeAlreadyUsed()
    if challenge.expire_time <= now:
        raise ChallengeExpired()
    if not await repositories.challenges.mark_used(challenge_id):
        raise ChallengeAlreadyUsed()
    return challenge
