"""Queries of the apikeys schema."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.apikeys import tables
from services.apikeys.domain import APIKey, APIKeyNotFound, Challenge
from services.core.pagination import Page, PageRequest
from services.core.repository import BaseRepository


class APIKeyRepository(BaseRepository[APIKey]):
    table = tables.api_keys

    def to_domain(self, row: Row[Any]) -> APIKey:
        return APIKey(
            key_id=row.key_id,
            wallet_address=row.wallet_address,
            name=row.name,
            key_prefix=row.key_prefix,
            create_time=row.create_time,
            expire_time=row.expire_time,
            revoke_time=row.revoke_time,
            last_used_time=row.last_used_time,
        )

    async def add(self, key: APIKey, secret_digest: str) -> APIKey:
        return await self.insert(
            {
                "key_id": key.key_id,
                "wallet_address": key.wallet_address,
                "name": key.name,
                "secret_digest": secret_digest,
                "key_prefix": key.key_prefix,
                "create_time": key.create_time,
                "expire_time": key.expire_time,
            }
        )

    async def by_digest(self, secret_digest: str) -> APIKey | None:
        # Found by the digest through a unique index, never by comparing secrets: what an
        # index lookup's timing could reveal is about SHA-256 outputs, which a caller cannot
        # steer towards a real key's digest.
        return await self.find(secret_digest=secret_digest)

    async def get(self, wallet_address: str, key_id: str) -> APIKey:
        key = await self.find(key_id=key_id, wallet_address=wallet_address)
        if key is None:
            raise APIKeyNotFound(key_id)
        return key

    async def lock_wallet(self, wallet_address: str) -> None:
        """Serialize the key creations of one wallet until the unit of work ends, so two at
        once cannot both pass the limit. SQLite's write lock already serializes all writers."""
        if self.is_postgresql:
            await self.execute(select(func.pg_advisory_xact_lock(func.hashtext(wallet_address))))

    async def count_active(self, wallet_address: str, now: datetime) -> int:
        t = self.table
        return await self.count(
            t.c.wallet_address == wallet_address,
            t.c.revoke_time.is_(None),
            or_(t.c.expire_time.is_(None), t.c.expire_time > now),
        )

    async def page_of(self, wallet_address: str, page_request: PageRequest) -> Page[APIKey]:
        t = self.table
        return await self.page(
            t.c.wallet_address == wallet_address,
            key=[t.c.create_time, t.c.key_id],
            size=page_request.size,
            after=page_request.after,
            descending=True,
        )

    async def revoke(self, wallet_address: str, key_id: str, now: datetime) -> APIKey:
        """Revoked now, or as it was if it already was (the first revoke time is kept)."""
        t = self.table
        revoked = await self.update_returning(
            t.c.key_id == key_id,
            t.c.wallet_address == wallet_address,
            t.c.revoke_time.is_(None),
            values={"revoke_time": now},
        )
        return revoked[0] if revoked else await self.get(wallet_address, key_id)

    async def remove(self, wallet_address: str, key_id: str) -> None:
        if not await self.delete_where(key_id=key_id, wallet_address=wallet_address):
            raise APIKeyNotFound(key_id)

    async def record_uses(self, last_used: dict[str, datetime]) -> None:
        """Move each key's last use forward (never back: another replica may know a later one)."""
        t = self.table
        for key_id, moment in last_used.items():
            await self.update_returning(
                t.c.key_id == key_id,
                or_(t.c.last_used_time.is_(None), t.c.last_used_time < moment),
                values={"last_used_time": moment},
            )


class ChallengeRepository(BaseRepository[Challenge]):
    table = tables.challenges

    def to_domain(self, row: Row[Any]) -> Challenge:
        return Challenge(
            challenge_id=row.challenge_id,
            wallet_address=row.wallet_address,
            message=row.message,
            create_time=row.create_time,
            expire_time=row.expire_time,
            used=row.used,
        )

    async def add(self, challenge: Challenge) -> Challenge:
        return await self.insert(
            {
                "challenge_id": challenge.challenge_id,
                "wallet_address": challenge.wallet_address,
                "message": challenge.message,
                "create_time": challenge.create_time,
                "expire_time": challenge.expire_time,
                "used": challenge.used,
            }
        )

    async def locked(self, challenge_id: str) -> Challenge | None:
        return await self.find(for_update=True, challenge_id=challenge_id)

    async def mark_used(self, challenge_id: str) -> bool:
        """True if this call used it; False if another had already."""
        t = self.table
        used = await self.update_returning(
            t.c.challenge_id == challenge_id, t.c.used.is_(False), values={"used": True}
        )
        return bool(used)

    async def sweep_expired(self, before: datetime) -> int:
        return await self.delete_matching(self.table.c.expire_time < before)


@dataclass(frozen=True)
class APIKeysRepositories:
    """Every repository of the apikeys schema, on one unit of work's connection."""

    keys: APIKeyRepository
    challenges: ChallengeRepository

    @classmethod
    def on(cls, connection: AsyncConnection) -> APIKeysRepositories:
        return cls(keys=APIKeyRepository(connection), challenges=ChallengeRepository(connection))
