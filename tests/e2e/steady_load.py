"""A steady, bounded load through the gateway for the canary tests and the rollback drill: a few
workers calling one cheap public RPC (mining's GetNetworkSummary) back to back, on loopback,
until told to stop, keeping the status every call ended with."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import grpc
from r3mes.mining.v1 import mining_pb2, mining_pb2_grpc

from gateway.paths import ROOT

# The retry policy docs/api.md asks clients to follow, as a gRPC service config.
SERVICE_CONFIG = ROOT / "clients" / "service-config.json"
WORKERS = 4
CALL_TIMEOUT_SECONDS = 10.0


@dataclass
class SteadyLoad:
    """Each call's final status, after whatever retries the channel's policy made."""

    ended: list[grpc.StatusCode] = field(default_factory=list)
    in_flight: set[int] = field(default_factory=set)
    _started: int = 0
    _ended_one: asyncio.Event = field(default_factory=asyncio.Event)

    def begin(self) -> int:
        self._started += 1
        self.in_flight.add(self._started)
        return self._started

    def end(self, call: int, code: grpc.StatusCode) -> None:
        self.in_flight.discard(call)
        self.ended.append(code)
        self._ended_one.set()

    @property
    def count(self) -> int:
        return len(self.ended)

    def codes(self) -> Counter[grpc.StatusCode]:
        return Counter(self.ended)

    async def calls_after(self, more: int) -> None:
        """Return once every call running now and `more` further calls have ended: the load's
        own pace, not a clock's. Every attempt made after that was sent after this call."""
        running = set(self.in_flight)
        target = self.count + more
        while self.count < target or running & self.in_flight:
            self._ended_one.clear()
            await self._ended_one.wait()


def channel_options(retries: bool) -> list[tuple[str, object]]:
    if not retries:
        return [("grpc.enable_retries", 0)]
    return [("grpc.enable_retries", 1), ("grpc.service_config", SERVICE_CONFIG.read_text())]


@asynccontextmanager
async def steady_load(
    gateway: str, *, retries: bool, calls_per_second: float | None = None
) -> AsyncIterator[SteadyLoad]:
    """Load the gateway at `gateway` (host:port) while the block runs, as fast as it answers or
    at about `calls_per_second`; `retries`: with the documented retry policy, else every
    attempt is final."""
    pause = 0.0 if calls_per_second is None else WORKERS / calls_per_second
    load = SteadyLoad()
    stopping = asyncio.Event()
    json.loads(SERVICE_CONFIG.read_text())  # a broken file fails here, not as a silent default
    async with grpc.aio.insecure_channel(gateway, options=channel_options(retries)) as channel:
        stub = mining_pb2_grpc.MiningServiceStub(channel)

        async def worker() -> None:
            while not stopping.is_set():
                call = load.begin()
                try:
                    await stub.GetNetworkSummary(
                        mining_pb2.GetNetworkSummaryRequest(), timeout=CALL_TIMEOUT_SECONDS
                    )
                    load.end(call, grpc.StatusCode.OK)
                except grpc.aio.AioRpcError as error:
                    load.end(call, error.code())
                await asyncio.sleep(pause)

        workers = [asyncio.create_task(worker()) for _ in range(WORKERS)]
        try:
            yield load
        finally:
            stopping.set()
            await asyncio.gather(*workers)
