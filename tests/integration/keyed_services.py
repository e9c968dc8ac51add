"""The four services in one test, each authenticating API keys through the real apikeys server
(each with authenticators_for, as every service)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import grpc
from r3mes.apikeys.v1 import apikeys_pb2_grpc
from r3mes.credits.v1 import credits_pb2_grpc
from r3mes.mining.v1 import mining_pb2_grpc
from r3mes.users.v1 import users_pb2_grpc

from services.apikeys.server import create_server as create_apikeys
from services.core.lifecycle import ServiceServer
from services.core.settings import Settings
from services.core.testing import FakeClock, serving
from services.credits.server import create_server as create_credits
from services.mining.server import create_server as create_mining
from services.users.server import create_server as create_users


@dataclass
class Suite:
    settings: Settings
    apikeys_server: ServiceServer
    apikeys_target: str
    apikeys: Any
    users: Any
    credits: Any
    mining: Any


@asynccontextmanager
async def keyed_suite(settings: Settings, clock: FakeClock) -> AsyncIterator[Suite]:
    """apikeys, then users, credits and mining asking it about keys; one channel each."""
    async with AsyncExitStack() as stack:
        apikeys_server, apikeys_target = await stack.enter_async_context(
            serving(partial(create_apikeys, clock=clock), settings, "apikeys")
        )
        settings = settings.with_targets(apikeys=apikeys_target)
        stubs = {}
        for name, create, stub in (
            ("users", partial(create_users, clock=clock), users_pb2_grpc.UsersServiceStub),
            ("credits", create_credits, credits_pb2_grpc.CreditsServiceStub),
            ("mining", create_mining, mining_pb2_grpc.MiningServiceStub),
        ):
            _, target = await stack.enter_async_context(serving(create, settings, name))
            channel = await stack.enter_async_context(grpc.aio.insecure_channel(target))
            stubs[name] = stub(channel)
        channel = await stack.enter_async_context(grpc.aio.insecure_channel(apikeys_target))
        yield Suite(
            settings,
            apikeys_server,
            apikeys_target,
            apikeys_pb2_grpc.APIKeysServiceStub(channel),
            stubs["users"],
            stubs["credits"],
            stubs["mining"],
        )
