"""The GCRA decision of both backends, case by case: in-process with a fake monotonic clock, and
the Redis script (on a redis-server of this module's own) with the same clock passed as `now`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from services.core.ratelimit import InProcessLimiter, Limiter, Rate, RedisLimiter, RedisProbe
from services.core.testing import FakeMonotonic, RedisServer

PER_MINUTE_3 = Rate(3, 60.0)


def probe(server: RedisServer) -> RedisProbe:
    return RedisProbe(server.url, 1.0)


@pytest.fixture(params=["memory", "redis"])
async def limiter(
    request: pytest.FixtureRequest, ticks: FakeMonotonic, redis_server: RedisServer
) -> AsyncIterator[Limiter]:
    backend: Limiter
    if request.param == "memory":
        backend = InProcessLimiter(ticks)
    else:
        backend = RedisLimiter(
            redis.asyncio.from_url(redis_server.url), "test redis", probe(redis_server), ticks
        )
    yield backend
    await backend.close()


def subject() -> str:
    return f"wallet:{uuid.uuid4().hex}"


async def test_a_fresh_bucket_admits_exactly_its_limit_then_refuses(limiter: Limiter) -> None:
    wallet = subject()

    decisions = [await limiter.decide("p", PER_MINUTE_3, [wallet]) for _ in range(4)]

    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    refused = decisions[-1]
    assert refused.subject == wallet
    # One call comes back every 20 s; the whole quota 60 s after the burst.
    assert refused.retry_after_seconds == pytest.approx(20.0)
    assert refused.reset_seconds == pytest.approx(60.0)


async def test_a_decision_that_only_asks_charges_nothing(limiter: Limiter) -> None:
    wallet = subject()

    asked = [await limiter.decide("p", PER_MINUTE_3, [wallet], charge=False) for _ in range(5)]
    charged = [await limiter.decide("p", PER_MINUTE_3, [wallet]) for _ in range(4)]
    asked_when_empty = await limiter.decide("p", PER_MINUTE_3, [wallet], charge=False)

    assert [d.allowed for d in asked] == [True] * 5
    assert [d.allowed for d in charged] == [True, True, True, False]
    assert (asked_when_empty.allowed, asked_when_empty.retry_after_seconds) == (False, 20.0)


PER_MINUTE_60 = Rate(60, 60.0)  # one unit a second


async def test_a_decision_of_several_units_charges_them_all(limiter: Limiter) -> None:
    wallet = subject()

    first = await limiter.decide("tokens", PER_MINUTE_60, [wallet], cost=50)
    second = await limiter.decide("tokens", PER_MINUTE_60, [wallet], cost=11)
    third = await limiter.decide("tokens", PER_MINUTE_60, [wallet], cost=10)

    assert (first.allowed, first.remaining) == (True, 10)
    assert not second.allowed
    assert second.retry_after_seconds == pytest.approx(1.0)
    assert (third.allowed, third.remaining) == (True, 0)


async def test_a_forced_charge_overdraws_and_cost_zero_then_refuses_until_it_is_repaid(
    limiter: Limiter, ticks: FakeMonotonic
) -> None:
    wallet = subject()

    before = await limiter.decide("tokens", PER_MINUTE_60, [wallet], cost=0)
    forced = await limiter.decide("tokens", PER_MINUTE_60, [wallet], cost=90, force=True)
    owing = await limiter.decide("tokens", PER_MINUTE_60, [wallet], cost=0)
    ticks.now += 30  # the 30 units owed beyond the bucket are repaid
    repaid = await limiter.decide("tokens", PER_MINUTE_60, [wallet], cost=0)

    assert before.allowed
    assert not forced.allowed  # reported as it is: beyond the limit, yet charged
    assert not owing.allowed
    assert owing.retry_after_seconds == pytest.approx(30.0)
    assert repaid.allowed
    assert repaid.remaining == 0


async def test_a_bucket_refills_one_call_per_interval(
    limiter: Limiter, ticks: FakeMonotonic
) -> None:
    wallet = subject()
    for _ in range(3):
        assert (await limiter.decide("p", PER_MINUTE_3, [wallet])).allowed

    ticks.now += 19.9
    assert not (await limiter.decide("p", PER_MINUTE_3, [wallet])).allowed
    ticks.now += 0.1
    assert (await limiter.decide("p", PER_MINUTE_3, [wallet])).allowed
    assert not (await limiter.decide("p", PER_MINUTE_3, [wallet])).allowed

    ticks.now += 60.0
    admitted = [(await limiter.decide("p", PER_MINUTE_3, [wallet])).allowed for _ in range(4)]
    assert admitted == [True, True, True, False]


async def test_a_refusal_by_one_bucket_charges_none_of_the_others(limiter: Limiter) -> None:
    wallet, address, other_address = subject(), f"ip:{uuid.uuid4().hex}", f"ip:{uuid.uuid4().hex}"
    for _ in range(3):
        assert (await limiter.decide("p", PER_MINUTE_3, [wallet, address])).allowed

    refused = await limiter.decide("p", PER_MINUTE_3, [wallet, other_address])

    assert not refused.allowed
    assert refused.subject == wallet
    # other_address paid nothing for the refused call: its three calls are all there.
    admitted = [
        (await limiter.decide("p", PER_MINUTE_3, [other_address])).allowed for _ in range(4)
    ]
    assert admitted == [True, True, True, False]


async def test_the_fullest_bucket_is_the_one_reported(limiter: Limiter) -> None:
    wallet, address = subject(), f"ip:{uuid.uuid4().hex}"
    await limiter.decide("p", PER_MINUTE_3, [address])

    decision = await limiter.decide("p", PER_MINUTE_3, [wallet, address])

    assert decision.allowed
    assert (decision.subject, decision.remaining) == (address, 1)


async def test_policies_keep_separate_buckets_for_one_subject(limiter: Limiter) -> None:
    wallet = subject()
    for _ in range(3):
        await limiter.decide("read", PER_MINUTE_3, [wallet])

    assert not (await limiter.decide("read", PER_MINUTE_3, [wallet])).allowed
    assert (await limiter.decide("write", PER_MINUTE_3, [wallet])).allowed


async def test_a_rate_whose_interval_is_not_whole_still_admits_its_whole_limit(
    limiter: Limiter,
) -> None:
    rate = Rate(7, 60.0)  # 8.571428... s per call
    wallet = subject()

    admitted = [(await limiter.decide("p", rate, [wallet])).allowed for _ in range(8)]

    assert admitted == [True] * 7 + [False]


async def test_redis_buckets_expire_once_full_again(
    redis_server: RedisServer, ticks: FakeMonotonic
) -> None:
    client = redis.asyncio.from_url(redis_server.url)
    limiter = RedisLimiter(client, "test redis", probe(redis_server), ticks)
    wallet = subject()

    await limiter.decide("p", PER_MINUTE_3, [wallet])

    ttl = await client.pttl(f"r3mes:rl:p:{wallet}")
    assert 19_000 < ttl <= 20_000  # full again one interval after one call
    await limiter.close()


async def test_redis_uses_its_own_clock_when_none_is_given(redis_server: RedisServer) -> None:
    limiter = RedisLimiter(
        redis.asyncio.from_url(redis_server.url), "test redis", probe(redis_server)
    )
    wallet = subject()

    decisions = [await limiter.decide("p", PER_MINUTE_3, [wallet]) for _ in range(4)]

    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert 19.0 < decisions[-1].retry_after_seconds <= 20.0
    await limiter.close()


async def test_concurrent_decisions_admit_exactly_the_limit(limiter: Limiter) -> None:
    wallet = subject()

    decisions = await asyncio.gather(
        *(limiter.decide("p", Rate(20, 60.0), [wallet]) for _ in range(100))
    )

    assert sum(decision.allowed for decision in decisions) == 20


async def test_redis_loads_the_script_again_when_the_server_forgot_it(
    redis_server: RedisServer, ticks: FakeMonotonic
) -> None:
    client = redis.asyncio.from_url(redis_server.url)
    limiter = RedisLimiter(client, "test redis", probe(redis_server), ticks)
    wallet = subject()
    await limiter.decide("p", PER_MINUTE_3, [wallet])

    await client.script_flush()  # a restarted or failed-over Redis: NOSCRIPT
    decisions = [await limiter.decide("p", PER_MINUTE_3, [wallet]) for _ in range(3)]

    assert [d.allowed for d in decisions] == [True, True, False]
    await limiter.close()


async def test_more_concurrent_calls_than_redis_connections_wait_their_turn(
    redis_server: RedisServer,
) -> None:
    """More decisions at once than the pool has connections: each waits for one, none is
    taken for an outage (the default pool of redis-py refuses them at once)."""
    limiter = RedisLimiter.from_url(redis_server.url, 5.0, 0.25, "open")
    wallet = subject()

    decisions = await asyncio.gather(
        *(limiter.decide("p", Rate(20, 60.0), [wallet]) for _ in range(300))
    )

    assert sum(decision.allowed for decision in decisions) == 20
    assert limiter.available
    await limiter.close()
