"""Several services in one test, each authenticating API keys through a real apikeys server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import grpc
from r3mes.apikeys.v1 import apikeys_pb2_grpc
from r3mes.credits.v1 import credits_pb2, credits_pb2_grpc
from r3mes.mining.v1 import mining_pb2, mining_pb2_grpc
from r3mes.users.v1 import users_pb2_grpc

from services.apikeys.server import create_server as create_apikeys
from services.core.apikey_auth import authenticators_for
from services.core.clients import ServiceClients
from services.core.clock import Clock
from services.core.lifecycle import ServiceServer, build_server, registration
from services.core.settings import Settings
from services.core.testing import FakeClock, serving
from services.users.server import create_server as create_users


async def create_unbuilt(
    settings: Settings, clock: Clock, *, service: Any, add: Any, servicer: Any, name: Any
) -> tuple[ServiceServer, int]:
    """A service whose RPCs are declared but not built (each answers UNIMPLEMENTED once every
    interceptor has let it through), wired for API keys as every server is:
    `authenticators_for(settings, clients)`."""
    clients = ServiceClients(settings)
    return build_server(
        settings,
        name,
        [registration(add, servicer, service)],
        closers=[clients.close],
        authenticators=authenticators_for(settings, clients, clock),
    )


create_credits = partial(
    create_unbuilt,
    service=credits_pb2.DESCRIPTOR.services_by_name["CreditsService"],
    add=credits_pb2_grpc.add_CreditsServiceServicer_to_server,
    servicer=credits_pb2_grpc.CreditsServiceServicer(),  # type: ignore[abstract]
    name="credits",
)
create_mining = partial(
    create_unbuilt,
    service=mining_pb2.DESCRIPTOR.services_by_name["MiningService"],
    add=mining_pb2_grpc.add_MiningServiceServicer_to_server,
    servicer=mining_pb2_grpc.MiningServiceServicer(),  # type: ignore[abstract]
    name="mining",
)


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
        settings = settings.model_copy(update={"apikeys_target": apikeys_target})
        stubs = {}
        for name, create, stub in (
            ("users", partial(create_users, clock=clock), users_pb2_grpc.UsersServiceStub),
            ("credits", partial(create_credits, clock=clock), credits_pb2_grpc.CreditsServiceStub),
            ("mining", partial(create_mining, clock=clock), mining_pb2_grpc.MiningServiceStub),
        ):
            _, target = await stack.enter_async_context(serving(create, settings, name))  # type: ignore[arg-type]
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
