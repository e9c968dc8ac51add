"""Keyset pagination (AIP-158), as use cases and repositories see it: a page request (how many,
after which key) and a page (the items, and the key to continue after). Plain values, no
protobuf: the tokens that carry keys over the wire are services.core.page_tokens'.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

ItemT = TypeVar("ItemT")
CursorValue = int | str | datetime
Cursor = tuple[CursorValue, ...]


@dataclass(frozen=True)
class PageRequest:
    """What a use case needs to read one page: how many items, and after which key."""

    size: int
    after: Cursor | None = None


@dataclass(frozen=True)
class Page(Generic[ItemT]):
    """One page of items, and the key to continue after (None: this was the last page)."""

    items: list[ItemT]
    next_after: Cursor | None = None
