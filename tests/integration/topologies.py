"""The whole suite in either topology, in this process: one server hosting every service (one
port, peers called in-process) or one server per service (peers over gRPC), on free ports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import grpc
from r3mes.apikeys.v1 import apikeys_pb2_grpc
from r3mes.credits.v1 import credits_pb2_grpc
from r3mes.mining.v1 import mining_pb2_grpc
from r3mes.serving.v1 import serving_pb2_grpc
from r3mes.users.v1 import users_pb2_grpc

from runner.local_stack import LOOPBACK, free_port
from services.core.clock import Clock
from services.core.hosting import host
from services.core.registry import NAMES, SERVICES
from services.core.settings import Settings

TOPOLOGIES = ["one-process", "split"]


@dataclass
class Suite:
    users: users_pb2_grpc.UsersServiceAsyncStub
    apikeys: apikeys_pb2_grpc.APIKeysServiceAsyncStub
    mining: mining_pb2_grpc.MiningServiceAsyncStub
    credits: credits_pb2_grpc.CreditsServiceAsyncStub
    serving: serving_pb2_grpc.ServingServiceAsyncStub


@asynccontextmanager
async def running_suite(settings: Settings, topology: str, clock: Clock) -> AsyncIterator[Suite]:
    """Every service, as `topology` places them. In one process no target is needed (and the
    settings' targets point where nobody listens): everything is asked in-process."""
    settings = settings.model_copy(update={"listen_host": LOOPBACK})
    async with AsyncExitStack() as stack:
        if topology == "one-process":
            groups = [list(SERVICES)]
            ports = dict.fromkeys(NAMES, free_port())
        else:
            groups = [[spec] for spec in SERVICES]
            ports = {name: free_port() for name in NAMES}
            targets = {f"{name}_target": f"{LOOPBACK}:{port}" for name, port in ports.items()}
            settings = settings.model_copy(update=targets)
        settings = settings.model_copy(update={f"{n}_port": p for n, p in ports.items()})
        for specs in groups:
            server, _ = await host(settings, specs, clock)
            await server.start()
            stack.push_async_callback(server.stop, 1.0)
        channels = {}
        for name, port in ports.items():
            channels[name] = await stack.enter_async_context(
                grpc.aio.insecure_channel(f"{LOOPBACK}:{port}")
            )
        yield Suite(
            users_pb2_grpc.UsersServiceStub(channels["users"]),
            apikeys_pb2_grpc.APIKeysServiceStub(channels["apikeys"]),
            mining_pb2_grpc.MiningServiceStub(channels["mining"]),
            credits_pb2_grpc.CreditsServiceStub(channels["credits"]),
            serving_pb2_grpc.ServingServiceStub(channels["serving"]),
        )
