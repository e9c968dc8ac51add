"""Events one service publishes about what it owns, for another to keep a read model of.

A service that owns some state (credits: balances) writes an event into its own outbox in the
same transaction as the change (services.core.outbox); its relay publishes the outbox in order
to a stream (services.core.event_stream); a service that shows that state (users) consumes the
stream into tables of its own. Light on purpose (no database, no Redis): use cases read these.

An event carries the key it is about (a wallet) and the state of that key right after the
change, never a delta, with the outbox's sequence number as its version: applying the newest
version wins, so an event delivered twice or late never moves a key back to an older state.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Event:
    """`sequence`: the outbox's number, growing with every change of the same key in the order
    the changes committed (the key's row is locked from the change to the commit)."""

    sequence: int
    key: str
    payload: Mapping[str, Any]

    def encoded(self) -> dict[str, str]:
        """The fields of a stream entry."""
        payload = json.dumps(self.payload)
        return {"sequence": str(self.sequence), "key": self.key, "payload": payload}

    @classmethod
    def decoded(cls, fields: Mapping[str, str]) -> Event:
        return cls(int(fields["sequence"]), fields["key"], json.loads(fields["payload"]))


def newest_per_key(events: Sequence[Event]) -> list[Event]:
    """Of a batch, only the newest event of each key: the older ones would be overwritten."""
    newest: dict[str, Event] = {}
    for event in events:
        kept = newest.get(event.key)
        if kept is None or kept.sequence < event.sequence:
            newest[event.key] = event
    return list(newest.values())


class EventSink(Protocol):
    """What a consumer (services.core.event_stream.StreamConsumer) feeds: the read model of one
    service, with where it stands in each stream kept in the same transactions."""

    async def position(self, stream: str) -> str | None:
        """The id of the last entry applied from `stream`; None if it never read it."""
        ...

    async def apply(self, stream: str, events: Sequence[Event], position: str) -> None:
        """Apply `events` (oldest first) and store `position`, in one transaction."""
        ...

    async def restart(self, stream: str, position: str) -> None:
        """Forget everything learnt from `stream` (entries were lost: trimmed, or Redis lost
        its data) and go on from `position`; in one transaction."""
        ...
