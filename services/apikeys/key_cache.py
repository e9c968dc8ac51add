"""The cache of API-key answers every service keeps, and the invalidations that empty it.

Answers live `ttl` seconds at most (cachetools' TTLCache, least recently used out first when
full): that is the bound on how stale an answer can be. Refusals (a key unknown, revoked or
expired) live in a store of their own for `refused_ttl` seconds: a flood of made-up keys then
cannot push the answers of real keys out, and a refusal cannot go stale: no key comes back
from revocation or expiry, and a secret never seen cannot become a key, since a new key's
secret is 190 random bits (a key created after its refusal was cached has another digest).
Their TTL is short anyway, only to bound their memory. When Redis is configured, the apikeys
service publishes the id of every revoked or deleted key on a channel and every process forgets
it at once; a process that loses the channel forgets everything, because what was announced
meanwhile is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import redis.asyncio
from cachetools import TTLCache
from redis.exceptions import RedisError

from services.apikeys.settings import APIKeysSettings
from services.core.settings import Settings

logger = logging.getLogger(__name__)

ValueT = TypeVar("ValueT")

PUBLISH_TIMEOUT_SECONDS = 2.0
RESUBSCRIBE_SECONDS = 1.0


class KeyCheckCache(Generic[ValueT]):
    """Answers by key digest; each remembers its key id so a withdrawn key can be forgotten."""

    def __init__(
        self,
        ttl_seconds: float,
        max_entries: int,
        timer: Callable[[], float] = time.monotonic,
        refused_ttl_seconds: float | None = None,
    ) -> None:
        self._entries: TTLCache[bytes, tuple[ValueT, str | None]] = TTLCache(
            max_entries, ttl_seconds, timer=timer
        )
        self._refused: TTLCache[bytes, ValueT] = TTLCache(
            max_entries, refused_ttl_seconds or ttl_seconds, timer=timer
        )
        # Bumped by every forget: an answer fetched before it may be stale and is not kept.
        self.generation = 0

    def get(self, digest: bytes) -> ValueT | None:
        entry = self._entries.get(digest)
        return self._refused.get(digest) if entry is None else entry[0]

    def put_refused(self, digest: bytes, value: ValueT) -> None:
        """An answer that refuses its key: true for good, so no withdrawal forgets it."""
        self._refused[digest] = value

    def put(self, digest: bytes, value: ValueT, key_id: str | None, *, if_generation: int) -> None:
        if if_generation == self.generation:
            self._entries[digest] = (value, key_id)

    def forget_key(self, key_id: str) -> None:
        self.generation += 1
        for digest in [d for d, (_, known) in list(self._entries.items()) if known == key_id]:
            self._entries.pop(digest, None)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class KeyInvalidations:
    """Withdrawn keys: forgotten here at once, and announced to (and heard from) every other
    process through Redis pub/sub when `redis_url` is set."""

    def __init__(self, cache: KeyCheckCache[Any], url: str | None, channel: str) -> None:
        self.cache = cache
        self._channel = channel
        # No socket timeout: the subscriber waits for messages indefinitely; publish has its own.
        self._redis = (
            redis.asyncio.from_url(url, socket_connect_timeout=PUBLISH_TIMEOUT_SECONDS)
            if url
            else None
        )
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, own: APIKeysSettings) -> KeyInvalidations:
        cache: KeyCheckCache[Any] = KeyCheckCache(
            own.apikeys_cache_ttl_seconds,
            own.apikeys_cache_max_entries,
            refused_ttl_seconds=own.apikeys_refused_cache_ttl_seconds,
        )
        return cls(cache, settings.redis_url, own.apikeys_invalidation_channel)

    async def key_withdrawn(self, key_id: str) -> None:
        self.cache.forget_key(key_id)
        if self._redis is None:
            return
        try:
            await asyncio.wait_for(
                self._redis.publish(self._channel, key_id), PUBLISH_TIMEOUT_SECONDS
            )
        except (RedisError, OSError, TimeoutError):
            # The withdrawal is stored; other processes stop trusting the key by the cache TTL.
            logger.warning("could not announce a withdrawn API key", extra={"key_id": key_id})

    def ensure_listening(self) -> None:
        """Start hearing announcements (from the first key this process caches on)."""
        if self._redis is not None and self._task is None:
            self._task = asyncio.create_task(self._listen(self._redis), name="apikeys-withdrawn")

    async def _listen(self, client: redis.asyncio.Redis) -> None:
        failing = False
        while True:
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    async for message in pubsub.listen():
                        if message["type"] == "subscribe":
                            self.cache.clear()
                            if failing:
                                logger.warning("listening to withdrawn API keys again")
                                failing = False
                        elif message["type"] == "message":
                            self.cache.forget_key(message["data"].decode())
            except (RedisError, OSError):
                self.cache.clear()
                if not failing:
                    logger.warning(
                        "lost the channel of withdrawn API keys; cached answers expire by TTL",
                        exc_info=True,
                    )
                    failing = True
            await asyncio.sleep(RESUBSCRIBE_SECONDS)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._redis is not None:
            await self._redis.aclose()
