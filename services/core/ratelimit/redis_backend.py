"""The distributed backend: every replica's buckets in one Redis, one atomic round trip per call.

The GCRA decision of `gcra.py` runs inside Redis as a Lua script (loaded once; EVALSHA, and
redis-py loads it again if the server answers NOSCRIPT), so reading and charging the buckets is
atomic: however many processes ask at once, no more calls are admitted than the policy allows.

The clock is the Redis server's (`TIME`), not the callers': every replica then agrees on when a
bucket refills, and a replica whose clock runs fast cannot refill buckets early. Tests pass an
explicit `now` instead, through the `clock` argument.

Whether Redis is reachable is a state, decided by a probe alone (run by the service as a
background job, in health as `<service>.ratelimit`, logged once when it fails and once when it
recovers): while Redis is unreachable the failure policy applies to every call at once, and no
call waits for Redis. A decision never decides the state by itself, because a decision's wait is
measured on the service's event loop: a process busy with other calls reads Redis's reply late,
and a short timeout there took a busy service for a Redis outage and admitted calls unchecked.
The probe measures Redis alone: a synchronous PING on a thread of its own, whose timeout the
kernel keeps (the thread only needs the GIL back, which a busy loop yields every few ms).
A decision that fails (its own longer deadline, a dropped connection) asks the probe at once;
if Redis answers the probe, that one call is refused (never admitted unchecked), else the
failure policy applies to it as to every call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from services.core.background import PeriodicJob
from services.core.ratelimit.gcra import MICROSECONDS, Decision, Rate

KEY_PREFIX = "r3mes:rl:"
MAX_CONNECTIONS = 64

# KEYS: the request's buckets. ARGV: emission interval and period (microseconds), `now`
# (microseconds; empty: the server's TIME), whether to charge an admitted call ("1"/"0"), the
# call's cost in units and whether to charge it even when refused ("1"/"0": gcra.py, `force`).
# Returns {admitted 0/1, index of the deciding bucket, microseconds until it admits a call,
# microseconds until it is full again}. Numbers are written
# with %.0f: Lua would print a microsecond timestamp with 14 digits and lose its tail.
GCRA_SCRIPT = """
local interval = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if not now then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
end
local step = interval * tonumber(ARGV[5])
local new_tats = {}
local worst, worst_wait, worst_tat = 1, nil, nil
for i, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  local new_tat = tat + step
  local wait = new_tat - period - now
  new_tats[i] = new_tat
  if worst_wait == nil or wait > worst_wait or (wait == worst_wait and new_tat > worst_tat) then
    worst, worst_wait, worst_tat = i, wait, new_tat
  end
end
local admitted = worst_wait <= 0
if ARGV[6] == '1' or (admitted and ARGV[4] == '1') then
  for i, key in ipairs(KEYS) do
    if new_tats[i] > now then
      local ttl = math.ceil((new_tats[i] - now) / 1000)
      redis.call('SET', key, string.format('%.0f', new_tats[i]), 'PX', ttl)
    end
  end
end
if not admitted then
  return {0, worst, worst_wait, worst_tat - step - now}
end
return {1, worst, 0, worst_tat - now}
"""


class LimiterUnavailable(Exception):
    """The limiter cannot decide (its Redis is unreachable); the failure policy applies."""


class DecisionFailed(Exception):
    """This one call could not be decided although Redis answers its probe: the call is
    refused, never admitted unchecked."""


class RedisProbe:
    """PING on a thread of its own with a synchronous client, so that its timeout measures
    Redis and not how busy this process's event loop is."""

    def __init__(self, url: str, timeout_seconds: float) -> None:
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry=redis.retry.Retry(NoBackoff(), 0),
        )
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ratelimit-probe")

    async def ping(self) -> None:
        """Raises RedisError when Redis does not answer within the timeout."""
        await asyncio.get_running_loop().run_in_executor(self._thread, self._client.ping)

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)
        self._client.close()


class RedisLimiter:
    def __init__(
        self,
        client: redis.asyncio.Redis,
        description: str,
        probe: RedisProbe,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._client = client
        self._script = client.register_script(GCRA_SCRIPT)
        self._description = description
        self._clock = clock
        self._probe = probe
        self.available = True
        # The health job's run, started when a decision fails (see `health_job`); one at a
        # time, shared by every call that failed meanwhile.
        self._recheck: Callable[[], Awaitable[bool]] | None = None
        self._rechecking: asyncio.Future[bool] | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        decision_timeout_seconds: float,
        probe_timeout_seconds: float,
        failure: str,
    ) -> RedisLimiter:
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url,
            # Calls beyond this many at once wait for a connection (up to the timeout): the
            # default pool would refuse them at once.
            max_connections=MAX_CONNECTIONS,
            timeout=decision_timeout_seconds,
            socket_timeout=decision_timeout_seconds,
            socket_connect_timeout=decision_timeout_seconds,
            # One try: a failed decision asks the probe instead (see the module's docstring).
            retry=redis.asyncio.retry.Retry(NoBackoff(), 0),
        )
        kwargs = pool.connection_kwargs
        description = f"Redis at {kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
        return cls(
            redis.asyncio.Redis(connection_pool=pool),
            f"{description} (ratelimit_redis_failure={failure})",
            RedisProbe(url, probe_timeout_seconds),
        )

    def health_job(self, interval_seconds: float) -> PeriodicJob:
        """The job that probes Redis every `interval_seconds`, and at once when a decision
        fails; its state (in health, logged once per change) is the limiter's."""
        job = PeriodicJob("ratelimit", interval_seconds, self.probe)
        self._recheck = job.run_once
        return job

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
        if not self.available:
            raise LimiterUnavailable(f"{self._description} is unreachable")
        now = "" if self._clock is None else str(round(self._clock() * MICROSECONDS))
        try:
            allowed, index, wait, reset = await self._script(
                keys=[f"{KEY_PREFIX}{policy}:{subject}" for subject in subjects],
                args=[
                    rate.interval_us,
                    rate.period_us,
                    now,
                    "1" if charge else "0",
                    cost,
                    "1" if force else "0",
                ],
            )
        except RedisError as error:
            # Without a health job (tests, benchmarks) there is no state to consult.
            if self._recheck is None or not await self._probe_now():
                raise LimiterUnavailable(f"{self._description} is unreachable") from error
            raise DecisionFailed(f"{self._description} answers, this decision failed") from error
        return Decision.of(rate, subjects[index - 1], bool(allowed), wait, reset)

    async def _probe_now(self) -> bool:
        """Whether Redis answers the probe, asked now (once for all who ask meanwhile)."""
        if self._rechecking is None:
            assert self._recheck is not None
            rechecking = asyncio.ensure_future(self._recheck())
            self._rechecking = rechecking
            rechecking.add_done_callback(lambda _: setattr(self, "_rechecking", None))
        return await asyncio.shield(self._rechecking)

    async def probe(self) -> None:
        """Reach Redis, or raise LimiterUnavailable; decisions resume once it answers."""
        try:
            await self._probe.ping()
        except RedisError as error:
            self.available = False
            raise LimiterUnavailable(
                f"{self._description} is unreachable: {error}; the failure policy applies "
                "to every rate-limited call until it answers"
            ) from error
        self.available = True

    async def close(self) -> None:
        self._probe.close()
        await self._client.aclose()
