"""What this process remembers between chats, to start the next one sooner.

- `RecentNodes`: the nodes that serve a model, as read within the last second. A chat then
  costs no read of the nodes when another asked for the same model just before. Freshness
  (heartbeat age, status) is judged again at every chat against the clock, so only a change
  to the nodes made through another replica (a node registered, removed or beating with a new
  load there) is seen up to a second late; every change made through this process clears it.
- `CreditHints`: each wallet's available credits after its last hold here. A wallet that could
  pay its last chat many times over is likely to pay this one: its node is asked while the
  hold is written, and the hold's time hides in the node's time to its first token. A wallet
  not seen, or short at its last chat, is asked for the hold first, so a wallet without credits
  never gets a node to start working for it; one whose hint is stale (its credits went to
  other chats meanwhile) costs a node a request that is cancelled at once.

Both are bounded: nodes are kept only for models some node serves (what a client names is
never a key unless it is served), hints for the most recent wallets only.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cachetools import TTLCache

from services.serving.domain import ServingNode

NODES_MAX_AGE_SECONDS = 1.0
HINTS_KEPT = 100_000
HINTS_MAX_AGE_SECONDS = 300.0


class RecentNodes:
    def __init__(
        self,
        max_age_seconds: float = NODES_MAX_AGE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_age = max_age_seconds
        self._monotonic = monotonic
        self._read: dict[tuple[str, str], tuple[float, list[ServingNode]]] = {}

    def get(self, model: str, adapter: str) -> list[ServingNode] | None:
        kept = self._read.get((model, adapter))
        if kept is None or self._monotonic() - kept[0] > self._max_age:
            return None
        return kept[1]

    def put(self, model: str, adapter: str, nodes: list[ServingNode]) -> None:
        """Kept only when some node serves the model, so the keys are served models."""
        if nodes:
            self._read[(model, adapter)] = (self._monotonic(), nodes)

    def clear(self) -> None:
        self._read.clear()


class CreditHints:
    def __init__(self) -> None:
        self._available: TTLCache[str, int] = TTLCache(HINTS_KEPT, HINTS_MAX_AGE_SECONDS)

    def likely_to_pay(self, wallet: str, amount: int) -> bool:
        return self._available.get(wallet, -1) >= amount

    def seen(self, wallet: str, available: int) -> None:
        self._available[wallet] = available
