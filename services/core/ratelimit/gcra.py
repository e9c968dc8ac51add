"""GCRA, the generic cell rate algorithm: the decision both backends take, and the in-process one.

Why GCRA: it is exact (a bucket admits its burst and then exactly one call per emission
interval, never a call more), and its whole state is one number per bucket, the theoretical
arrival time (TAT). One number is what makes the Redis backend a single atomic script over
plain GET/SET, with no list of timestamps to trim (a sliding log) and no window boundary at
which twice the quota slips through (a fixed window counter).

With a quota of `limit` calls per `period`, the emission interval is `period / limit` and the
burst tolerance `period - interval`, so a fresh bucket admits `limit` calls at once and then
refills one call per interval. A call is admitted when `max(TAT, now) + interval - period <=
now`; admitting it moves TAT by one interval. The calls of one request are checked against every
bucket it falls in (its wallet and its address) and either all are charged or none.

The same arithmetic is written once more in Lua for Redis (`redis_backend.py`); the unit tests
run the same cases through both.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MonotonicClock = Callable[[], float]


@dataclass(frozen=True)
class Rate:
    """`limit` calls per `period_seconds`."""

    limit: int
    period_seconds: float

    @property
    def interval_seconds(self) -> float:
        return self.period_seconds / self.limit


@dataclass(frozen=True)
class Decision:
    """The outcome for one request. `subject` is the bucket that decided it: the one that
    refused, or when admitted the one with the fewest calls left; `reset_seconds` is how long
    until that bucket is full again, `retry_after_seconds` how long until it admits a call."""

    allowed: bool
    subject: str
    remaining: int
    reset_seconds: float
    retry_after_seconds: float = 0.0


def decide(
    rate: Rate, subjects: Sequence[str], tats: Sequence[float | None], now: float
) -> tuple[Decision, list[float] | None]:
    """The decision for buckets whose TATs are `tats` (None: never used), and the buckets' new
    TATs when the call is admitted (None when refused: nothing is charged)."""
    interval, period = rate.interval_seconds, rate.period_seconds
    new_tats = [max(tat if tat is not None else now, now) + interval for tat in tats]
    waits = [new_tat - period - now for new_tat in new_tats]
    # The bucket that decides: the longest wait (refused when positive), else the fullest TAT.
    worst = max(range(len(subjects)), key=lambda i: (waits[i], new_tats[i]))
    if waits[worst] > 0:
        return Decision(
            allowed=False,
            subject=subjects[worst],
            remaining=0,
            reset_seconds=new_tats[worst] - interval - now,
            retry_after_seconds=waits[worst],
        ), None
    reset = new_tats[worst] - now
    return Decision(True, subjects[worst], remaining_after(rate, reset), reset), new_tats


def remaining_after(rate: Rate, reset_seconds: float) -> int:
    """Calls a bucket still admits at once when it is full again in `reset_seconds`."""
    # The small epsilon keeps float rounding (60 / 7 * 7 != 60) from hiding a call.
    return max(0, math.floor((rate.period_seconds - reset_seconds) / rate.interval_seconds + 1e-9))


class InProcessLimiter:
    """The embedded default: buckets in this process's memory.

    Exact under asyncio concurrency because a decision never awaits between reading and
    writing the buckets: the event loop cannot interleave two of them. Only as exact as one
    process is: replicas (or `workers` > 1) each keep their own buckets; use Redis there.
    The clock is monotonic (wall-clock steps must not refill or drain buckets) and injectable.
    """

    def __init__(self, clock: MonotonicClock = time.monotonic) -> None:
        self._clock = clock
        self._tats: dict[str, float] = {}
        self._sweep_at = 1024

    async def decide(self, policy: str, rate: Rate, subjects: Sequence[str]) -> Decision:
        now = self._clock()
        keys = [f"{policy}:{subject}" for subject in subjects]
        decision, new_tats = decide(rate, subjects, [self._tats.get(key) for key in keys], now)
        if new_tats is not None:
            self._tats.update(zip(keys, new_tats, strict=True))
            if len(self._tats) > self._sweep_at:
                self._sweep(now)
        return decision

    def _sweep(self, now: float) -> None:
        """Forget buckets that are full again (their TAT has passed): amortised O(1)."""
        self._tats = {key: tat for key, tat in self._tats.items() if tat > now}
        self._sweep_at = max(1024, 2 * len(self._tats))

    async def close(self) -> None:
        return None
