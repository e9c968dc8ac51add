"""Withdrawn keys over real Redis pub/sub: heard by every listener, and a listener that loses
the channel drops every cached answer (what was announced meanwhile is lost to it)."""

from __future__ import annotations

import uuid

import redis.asyncio

from services.apikeys.key_cache import KeyCheckCache, KeyInvalidations
from services.core.testing import eventually
from tests.faults import CuttableProxy

REDIS_URL = "redis://127.0.0.1:6379/9"
WAIT_SECONDS = 3.0


def remember(cache: KeyCheckCache[str], key_id: str) -> None:
    cache.put(key_id.encode(), "valid", key_id, if_generation=cache.generation)


async def test_a_key_withdrawn_in_one_process_is_forgotten_by_the_others() -> None:
    channel = f"test.withdrawn.{uuid.uuid4().hex}"
    here: KeyCheckCache[str] = KeyCheckCache(60, 100)
    there: KeyCheckCache[str] = KeyCheckCache(60, 100)
    announcer = KeyInvalidations(here, REDIS_URL, channel)
    listener = KeyInvalidations(there, REDIS_URL, channel)
    remember(there, "before")
    listener.ensure_listening()
    try:
        # Subscribed: the cache starts afresh.
        await eventually(lambda: len(there) == 0, WAIT_SECONDS)
        for key_id in ("k1", "k2"):
            remember(here, key_id)
            remember(there, key_id)

        await announcer.key_withdrawn("k1")

        assert here.get(b"k1") is None
        await eventually(lambda: there.get(b"k1") is None, WAIT_SECONDS)
        assert there.get(b"k2") == "valid"
    finally:
        await listener.close()
        await announcer.close()


async def test_a_listener_that_loses_the_channel_drops_every_cached_answer() -> None:
    proxy = CuttableProxy("127.0.0.1", 6379)
    await proxy.start()
    channel = f"test.withdrawn.{uuid.uuid4().hex}"
    cache: KeyCheckCache[str] = KeyCheckCache(60, 100)
    listener = KeyInvalidations(cache, f"redis://127.0.0.1:{proxy.port}/9", channel)
    remember(cache, "before")
    listener.ensure_listening()
    direct = redis.asyncio.from_url(REDIS_URL)
    try:
        await eventually(lambda: len(cache) == 0, WAIT_SECONDS)
        remember(cache, "k1")
        await direct.publish(channel, "k1")
        await eventually(lambda: len(cache) == 0, WAIT_SECONDS)  # heard through the proxy
        remember(cache, "k2")

        await proxy.cut()

        await eventually(lambda: len(cache) == 0, WAIT_SECONDS)
    finally:
        await listener.close()
        await direct.aclose()
