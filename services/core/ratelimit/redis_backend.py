"""The distributed backend: every replica's buckets in one Redis, one atomic round trip per call.

The GCRA decision of `gcra.py` runs inside Redis as a Lua script (loaded once; EVALSHA, and
redis-py loads it again if the server answers NOSCRIPT), so reading and charging the buckets is
atomic: however many processes ask at once, no more calls are admitted than the policy allows.

The clock is the Redis server's (`TIME`), not the callers': every replica then agrees on when a
bucket refills, and a replica whose clock runs fast cannot refill buckets early. Tests pass an
explicit `now` instead, through the `clock` argument.

When Redis cannot be reached the limiter stops asking it (so calls do not each wait for a
timeout) and raises LimiterUnavailable at once, until `probe` (run by the service as a
background job, in health as `<service>.ratelimit`) reaches Redis again. Each change is logged
once: here when a decision finds Redis gone and when the probe finds it back, by the background
job when the probe itself fails and recovers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from services.core.ratelimit.gcra import MICROSECONDS, Decision, Rate

logger = logging.getLogger(__name__)

KEY_PREFIX = "r3mes:rl:"
MAX_CONNECTIONS = 64

# KEYS: the request's buckets. ARGV: emission interval and period (microseconds), and `now`
# (microseconds; empty: the server's TIME). Returns {admitted 0/1, index of the deciding bucket,
# microseconds until it admits a call, microseconds until it is full again}. Numbers are written
# with %.0f: Lua would print a microsecond timestamp with 14 digits and lose its tail.
GCRA_SCRIPT = """
local interval = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if not now then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
end
local new_tats = {}
local worst, worst_wait, worst_tat = 1, nil, nil
for i, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  local new_tat = tat + interval
  local wait = new_tat - period - now
  new_tats[i] = new_tat
  if worst_wait == nil or wait > worst_wait or (wait == worst_wait and new_tat > worst_tat) then
    worst, worst_wait, worst_tat = i, wait, new_tat
  end
end
if worst_wait > 0 then
  return {0, worst, worst_wait, worst_tat - interval - now}
end
for i, key in ipairs(KEYS) do
  local ttl = math.ceil((new_tats[i] - now) / 1000)
  redis.call('SET', key, string.format('%.0f', new_tats[i]), 'PX', ttl)
end
return {1, worst, 0, worst_tat - now}
"""


class LimiterUnavailable(Exception):
    """The limiter cannot decide (its Redis is unreachable); the failure policy applies."""


class RedisLimiter:
    def __init__(
        self,
        client: redis.asyncio.Redis,
        description: str,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._client = client
        self._script = client.register_script(GCRA_SCRIPT)
        self._description = description
        self._clock = clock
        self.available = True

    @classmethod
    def from_url(cls, url: str, timeout_seconds: float, failure: str) -> RedisLimiter:
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url,
            # Calls beyond this many at once wait for a connection (up to the timeout): the
            # default pool would refuse them at once, and the failure policy would apply to
            # a busy service as if Redis were down.
            max_connections=MAX_CONNECTIONS,
            timeout=timeout_seconds,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=max(1.0, timeout_seconds),
            # One try: a retry would double the wait of every call while Redis is away, and
            # the failure policy already says what to do instead.
            retry=Retry(NoBackoff(), 0),
        )
        kwargs = pool.connection_kwargs
        description = f"Redis at {kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
        return cls(
            redis.asyncio.Redis(connection_pool=pool),
            f"{description} (ratelimit_redis_failure={failure})",
        )

    async def decide(self, policy: str, rate: Rate, subjects: Sequence[str]) -> Decision:
        if not self.available:
            raise LimiterUnavailable(f"{self._description} is unreachable")
        now = "" if self._clock is None else str(round(self._clock() * MICROSECONDS))
        try:
            allowed, index, wait, reset = await self._script(
                keys=[f"{KEY_PREFIX}{policy}:{subject}" for subject in subjects],
                args=[rate.interval_us, rate.period_us, now],
            )
        except RedisError as error:
            if self.available:
                self.available = False
                logger.warning(
                    "rate limiter lost Redis; the failure policy applies until it answers",
                    extra={"redis": self._description, "error": str(error)},
                )
            raise LimiterUnavailable(f"{self._description} is unreachable: {error}") from error
        return Decision.of(rate, subjects[index - 1], bool(allowed), wait, reset)

    async def probe(self) -> None:
        """Reach Redis, or raise LimiterUnavailable; decisions resume once it answers."""
        try:
            await self._client.ping()
        except RedisError as error:
            self.available = False
            raise LimiterUnavailable(
                f"{self._description} is unreachable: {error}; the failure policy applies "
                "to every rate-limited call until it answers"
            ) from error
        if not self.available:
            self.available = True
            logger.warning("rate limiter reached Redis again", extra={"redis": self._description})

    async def close(self) -> None:
        await self._client.aclose()
