"""Events over Redis Streams: the outbox relay's publisher and a read model's consumer.

One stream per publishing service (`<events_stream_prefix><service>`), capped at about
`events_stream_max_length` entries (XADD MAXLEN ~). The consumer keeps its position in each
stream in its own database, in the transaction that applies what it read (services.core.events.
EventSink), so a consumer that restarts goes on where it stopped and applies nothing twice
(an entry read again is an old version, ignored). Entries it can no longer read (it fell behind
past the cap, or Redis lost its data) are detected when it starts and after every lost
connection: its position is older than the stream's first entry, or the stream is gone. It then
restarts the read model of that stream (forgets it: readers ask the owner again) from the
stream's end.

Redis Streams rather than LISTEN/NOTIFY: the project already runs Redis beside PostgreSQL, and
SQLite (the embedded mode, which can also run split) has no notifications.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar, cast

import redis.asyncio
from redis.exceptions import RedisError, ResponseError

from services.core.background import PeriodicJob
from services.core.clock import Clock
from services.core.events import Event, EventSink
from services.core.outbox import (
    PRUNE_INTERVAL_SECONDS,
    Discard,
    OutboxRepository,
    Publisher,
    pruner_job,
    relay_job,
)
from services.core.settings import Settings
from services.core.uow import UnitOfWork

RepositoriesT = TypeVar("RepositoriesT")
Closer = Callable[[], Awaitable[None]]

logger = logging.getLogger(__name__)

START = "0-0"
FAILURE_PAUSE_SECONDS = 1.0
# Of a publish or a read's round trip beyond its own blocking wait.
REDIS_TIMEOUT_SECONDS = 2.0


def stream_name(prefix: str, service: str) -> str:
    return f"{prefix}{service}"


def redis_client(url: str, timeout_seconds: float) -> redis.asyncio.Redis:
    return redis.asyncio.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=timeout_seconds,
        socket_timeout=timeout_seconds,
    )


class StreamPublisher:
    """The outbox relay's publisher (services.core.outbox.Publisher): one pipeline per batch."""

    def __init__(self, client: redis.asyncio.Redis, stream: str, max_length: int) -> None:
        self._client = client
        self._stream = stream
        self._max_length = max_length

    async def publish(self, events: Sequence[Event]) -> None:
        async with self._client.pipeline(transaction=False) as pipeline:
            for event in events:
                fields: dict[Any, Any] = event.encoded()
                pipeline.xadd(self._stream, fields, maxlen=self._max_length, approximate=True)
            await pipeline.execute()


def _entry_id(text: str) -> tuple[int, int]:
    milliseconds, _, sequence = text.partition("-")
    return int(milliseconds), int(sequence or 0)


class StreamConsumer:
    """Reads `streams` into `sink`, one XREAD (blocking up to `block_seconds`) per `run_once`;
    run it as a background job (services.core.background.PeriodicJob) with no pause."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        streams: Sequence[str],
        sink: EventSink,
        *,
        block_seconds: float,
        batch: int = 500,
    ) -> None:
        self._client = client
        self._streams = list(streams)
        self._sink = sink
        self._block_milliseconds = max(1, round(block_seconds * 1000))
        self._batch = batch
        self._positions: dict[str, str] | None = None
        self._last_read: float | None = None
        self._failed = False

    def read_within(self, seconds: float) -> bool:
        """Whether the consumer's last read of every stream ended less than `seconds` ago:
        what it has applied is then at most that old (plus the publishers' own lag)."""
        last = self._last_read
        return last is not None and time.monotonic() - last < seconds

    async def run_once(self) -> int:
        """One read; how many events it applied. Raises what Redis or the sink raised."""
        if self._failed:
            # A failing Redis is asked again after a pause, not in a tight loop.
            await asyncio.sleep(FAILURE_PAUSE_SECONDS)
        self._failed = True
        try:
            if self._positions is None:
                self._positions = await self._resume()
            positions = self._positions
            asked: dict[Any, Any] = dict(positions)
            # With decode_responses: [[stream, [(id, {field: value})...]]...], or None.
            reply = cast(
                "list[tuple[str, list[tuple[str, dict[str, str]]]]] | None",
                await self._client.xread(asked, count=self._batch, block=self._block_milliseconds),
            )
            applied = 0
            for stream, entries in reply or []:
                if not entries:
                    continue
                events = [Event.decoded(fields) for _, fields in entries]
                last_id = entries[-1][0]
                await self._sink.apply(stream, events, last_id)
                positions[stream] = last_id
                applied += len(events)
        except (RedisError, OSError):
            # Redis may come back without what it held: check again where each stream stands.
            self._positions = None
            self._last_read = None
            raise
        self._failed = False
        self._last_read = time.monotonic()
        return applied

    async def _resume(self) -> dict[str, str]:
        positions = {}
        for stream in self._streams:
            stored = await self._sink.position(stream)
            first, last = await self._bounds(stream)
            lost = stored is None or (
                stored != START and (first is None or _entry_id(stored) < _entry_id(first))
            )
            if lost:
                position = last or START
                # A first start is news; entries lost to a reader that had started are trouble.
                log = logger.info if stored is None else logger.warning
                log(
                    "read model starts afresh at the stream's end: entries before were not read",
                    extra={"stream": stream, "position": stored, "restart_at": position},
                )
                await self._sink.restart(stream, position)
            else:
                assert stored is not None
                position = stored
            positions[stream] = position
        return positions

    async def _bounds(self, stream: str) -> tuple[str | None, str | None]:
        """The ids of the stream's first entry and of the last it ever had; None if none."""
        try:
            info = await self._client.xinfo_stream(stream)
        except ResponseError:
            return None, None  # no such stream (yet)
        first = info.get("first-entry")
        return (first[0] if first else None), info.get("last-generated-id")


def publishing_jobs(
    settings: Settings,
    service: str,
    uow: UnitOfWork[RepositoriesT],
    store: Callable[[RepositoriesT], OutboxRepository],
    clock: Clock,
) -> tuple[list[PeriodicJob], list[Closer]]:
    """The background jobs of a service whose outbox others read (its relay to its stream when
    Redis is set, else a relay that drops; the pruner), and what closes them."""
    publisher: Publisher = Discard()
    # With nowhere to publish, no reader waits: the relay only keeps the table small, as
    # seldom as the pruner, rather than a transaction every tenth of a second for nothing.
    interval = PRUNE_INTERVAL_SECONDS
    closers: list[Closer] = []
    if settings.redis_url is not None:
        client = redis_client(settings.redis_url, REDIS_TIMEOUT_SECONDS)
        stream = stream_name(settings.events_stream_prefix, service)
        publisher = StreamPublisher(client, stream, settings.events_stream_max_length)
        interval = settings.outbox_relay_interval_seconds
        closers.append(client.aclose)
    jobs = [
        relay_job(uow, store, publisher, clock, interval),
        pruner_job(uow, store, clock, timedelta(seconds=settings.outbox_retention_seconds)),
    ]
    return jobs, closers
