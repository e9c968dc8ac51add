"""The kernel's outbox repository with its table in memory. No trigger writes here: a test
writes the events it needs (`written`); the triggers are storage's, tested on both engines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.core.events import Event
from services.core.outbox import OutboxRepository


@dataclass
class OutboxRow:
    event: Event
    sent_time: datetime | None = None


@dataclass
class OutboxRows:
    rows: list[OutboxRow] = field(default_factory=list)

    def written(self, key: str, payload: Mapping[str, Any]) -> Event:
        """An event as the trigger writes it: the next sequence number."""
        event = Event(len(self.rows) + 1, key, dict(payload))
        self.rows.append(OutboxRow(event))
        return event


class OutboxInMemory(OutboxRepository):
    def __init__(self, outbox: OutboxRows) -> None:
        self._rows = outbox.rows

    async def unsent(self, limit: int) -> list[Event]:
        return [row.event for row in self._rows if row.sent_time is None][:limit]

    async def mark_sent(self, sequences: Sequence[int], now: datetime) -> None:
        for row in self._rows:
            if row.event.sequence in sequences:
                row.sent_time = now

    async def prune(self, sent_before: datetime, limit: int) -> int:
        pruned = [
            row for row in self._rows if row.sent_time is not None and row.sent_time < sent_before
        ][:limit]
        self._rows[:] = [row for row in self._rows if row not in pruned]
        return len(pruned)
