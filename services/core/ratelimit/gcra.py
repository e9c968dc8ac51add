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

A decision may cost more than one unit (`cost`): the tokens of a chat under a tokens-per-minute
policy move TAT by `cost` intervals. Cost 0 only asks whether a bucket is overdrawn, and a
forced charge (`force`) is stored even past the limit: that is how tokens, known only once an
answer has ended, are counted (LiteLLM's TPM works so: a call is admitted while its key is under
the limit, and its tokens are added afterwards), so a bucket can owe and refuses until it has
refilled what it owes.

The same arithmetic, in integer microseconds, is written once more in Lua for Redis
(`redis_backend.py`); tests/integration/test_ratelimit_backends.py runs every case through both.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MonotonicClock = Callable[[], float]
MICROSECONDS = 1_000_000


@dataclass(frozen=True)
class Rate:
    """`limit` calls per `period_seconds`."""

    limit: int
    period_seconds: float

    @property
    def period_us(self) -> int:
        return round(self.period_seconds * MICROSECONDS)

    @property
    def interval_us(self) -> int:
        """Rounded down, so that a burst of `limit` calls always fits in the period."""
        return self.period_us // self.limit


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

    @classmethod
    def of(cls, rate: Rate, subject: str, allowed: bool, wait_us: int, reset_us: int) -> Decision:
        if not allowed:
            return cls(False, subject, 0, reset_us / MICROSECONDS, wait_us / MICROSECONDS)
        remaining = max(0, (rate.period_us - reset_us) // rate.interval_us)
        return cls(True, subject, remaining, reset_us / MICROSECONDS)


def decide(
    rate: Rate,
    subjects: Sequence[str],
    tats: Sequence[int | None],
    now: int,
    cost: int = 1,
) -> tuple[Decision, list[int]]:
    """The decision for buckets whose TATs are `tats` (microseconds; None: never used) and a
    call costing `cost` units, and the buckets' TATs once charged (stored only when the call is
    admitted, or the charge forced). Integer microseconds, as in the Redis script, so both
    backends decide alike to the last microsecond (floats would let 7 calls of 60/7 s each
    overrun 60 s)."""
    interval, period = rate.interval_us, rate.period_us
    step = cost * interval
    new_tats = [max(tat if tat is not None else now, now) + step for tat in tats]
    waits = [new_tat - period - now for new_tat in new_tats]
    # The bucket that decides: the longest wait (refused when positive), else the fullest TAT.
    worst = max(range(len(subjects)), key=lambda i: (waits[i], new_tats[i]))
    if waits[worst] > 0:
        reset = new_tats[worst] - step - now
        return Decision.of(rate, subjects[worst], False, waits[worst], reset), new_tats
    return Decision.of(rate, subjects[worst], True, 0, new_tats[worst] - now), new_tats


class InProcessLimiter:
    """The embedded default: buckets in this process's memory.

    Exact under asyncio concurrency because a decision never awaits between reading and
    writing the buckets: the event loop cannot interleave two of them. Only as exact as one
    process is: replicas (or `workers` > 1) each keep their own buckets; use Redis there.
    The clock is monotonic (wall-clock steps must not refill or drain buckets) and injectable.
    """

    def __init__(self, clock: MonotonicClock = time.monotonic) -> None:
        self._clock = clock
        self._tats: dict[str, int] = {}
        self._sweep_at = 1024

    async def decide(
        self,
        policy: str,
        rate: Rate,
        subjects: Sequence[str],
        *,
        charge: bool = True,
        cost: int = 1,
        force: bool = False,
    ) -> Decision:
        now = round(self._clock() * MICROSECONDS)
        keys = [f"{policy}:{subject}" for subject in subjects]
        tats = [self._tats.get(key) for key in keys]
        decision, new_tats = decide(rate, subjects, tats, now, cost)
        if force or (decision.allowed and charge):
            self._tats.update(zip(keys, new_tats, strict=True))
            if len(self._tats) > self._sweep_at:
                self._sweep(now)
        return decision

    def _sweep(self, now: int) -> None:
        """Forget buckets that are full again (their TAT has passed): amortised O(1)."""
        self._tats = {key: tat for key, tat in self._tats.items() if tat > now}
        self._sweep_at = max(1024, 2 * len(self._tats))

    async def close(self) -> None:
        return None
