"""Exactness across processes: four processes asking one Redis at once for one wallet's bucket
of the 20/minute write policy get exactly 20 calls admitted, never one more."""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

import redis.asyncio

from services.core.ratelimit import RedisLimiter, RedisProbe, load_policies
from services.core.testing import RedisServer

PROCESSES = 4
CALLS_PER_PROCESS = 25  # 100 in all, five times the policy's 20
# One instant for every process: the window cannot move while they hammer, however slowly
# this shared machine runs them, so "exactly 20" depends on the script's atomicity alone.
FROZEN_NOW = 1_700_000_000.0


def hammer(url: str, wallet: str, start: Barrier, results: Queue[int]) -> None:
    """One process: CALLS_PER_PROCESS concurrent decisions; puts how many were admitted."""
    policy = load_policies().for_method("/r3mes.users.v1.UsersService/CreateUser")

    async def run() -> int:
        limiter = RedisLimiter(
            redis.asyncio.from_url(url), "test redis", RedisProbe(url, 1.0), lambda: FROZEN_NOW
        )
        await limiter.decide("warm-up", policy.rate, ["nobody"])  # connected, script loaded
        start.wait()
        decisions = await asyncio.gather(
            *(limiter.decide(policy.name, policy.rate, [wallet]) for _ in range(CALLS_PER_PROCESS))
        )
        await limiter.close()
        return sum(decision.allowed for decision in decisions)

    results.put(asyncio.run(run()))


def test_four_processes_get_exactly_the_policys_twenty_calls(redis_server: RedisServer) -> None:
    policy = load_policies().for_method("/r3mes.users.v1.UsersService/CreateUser")
    assert (policy.name, policy.rate.limit, policy.rate.period_seconds) == ("write", 20, 60.0)
    wallet = f"wallet:{uuid.uuid4().hex}"
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES)

    results: Queue[int] = context.Queue()
    processes = [
        context.Process(target=hammer, args=(redis_server.url, wallet, start, results))
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    admitted = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=10)

    assert sum(admitted) == 20
    assert [process.exitcode for process in processes] == [0] * PROCESSES
