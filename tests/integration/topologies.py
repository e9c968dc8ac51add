"""The whole suite in either topology, in this process: one server hosting every service (one
port, peers called in-process) or one server per service (peers and API keys asked over gRPC), on
free ports. Every service is the registry's: a new one runs here with no edit."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import grpc
from r3mes.apikeys.v1 import apikeys_pb2_grpc
from r3mes.credits.v1 import credits_pb2_grpc
from r3mes.mining.v1 import mining_pb2_grpc
from r3mes.serving.v1 import serving_pb2_grpc
from r3mes.users.v1 import users_pb2_grpc

from runner.local_stack import LOOPBACK, ONE_PROCESS
from services.core.clock import Clock
from services.core.hosting import host
from services.core.lifecycle import ServiceServer
from services.core.registry import SERVICES
from services.core.servicespec import ServiceSpec
from services.core.settings import Settings

SPLIT = "split"
TOPOLOGIES = [ONE_PROCESS, SPLIT]


@dataclass(frozen=True)
class Suite:
    """Every service, running; by service name, the server hosting it and a channel to it. The
    stubs below serve the tests of flows that name the services they call."""

    settings: Settings  # with every service's target
    servers: Mapping[str, ServiceServer]  # in one process, the same server for all
    channels: Mapping[str, grpc.aio.Channel]

    @property
    def users(self) -> users_pb2_grpc.UsersServiceAsyncStub:
        return users_pb2_grpc.UsersServiceStub(self.channels["users"])

    @property
    def apikeys(self) -> apikeys_pb2_grpc.APIKeysServiceAsyncStub:
        return apikeys_pb2_grpc.APIKeysServiceStub(self.channels["apikeys"])

    @property
    def mining(self) -> mining_pb2_grpc.MiningServiceAsyncStub:
        return mining_pb2_grpc.MiningServiceStub(self.channels["mining"])

    @property
    def credits(self) -> credits_pb2_grpc.CreditsServiceAsyncStub:
        return credits_pb2_grpc.CreditsServiceStub(self.channels["credits"])

    @property
    def serving(self) -> serving_pb2_grpc.ServingServiceAsyncStub:
        return serving_pb2_grpc.ServingServiceStub(self.channels["serving"])


def started_before_their_callers(specs: Sequence[ServiceSpec]) -> list[ServiceSpec]:
    """The specs ordered so that each starts after what it calls: whoever issues credentials
    (every service checks them) first, then each service after its peers."""
    issuers = [spec for spec in specs if spec.authenticators_elsewhere is not None]
    order = list(issuers)
    while len(order) < len(specs):
        ready = [
            spec
            for spec in specs
            if spec not in order and all(peer in {s.name for s in order} for peer in spec.peers)
        ]
        if not ready:
            raise ValueError(f"the peers of {[s.name for s in specs if s not in order]} loop")
        order.extend(ready)
    return order


@asynccontextmanager
async def running_suite(settings: Settings, topology: str, clock: Clock) -> AsyncIterator[Suite]:
    """Every service, as `topology` places them. In one process no target is needed (and the
    settings' targets point where nobody listens): everything is asked in-process. Each server
    takes a port of its own choosing (port 0), so no other process can take it first; split,
    each is started after its peers, whose targets are then known."""
    settings = settings.model_copy(update={"listen_host": LOOPBACK})
    groups = [list(SERVICES)]
    if topology == SPLIT:
        groups = [[spec] for spec in started_before_their_callers(SERVICES)]
    targets: dict[str, str] = {}
    servers: dict[str, ServiceServer] = {}
    async with AsyncExitStack() as stack:
        for specs in groups:
            own = settings.with_ports(**{spec.name: 0 for spec in specs}).with_targets(**targets)
            server, port = await host(own, specs, clock)
            await server.start()
            stack.push_async_callback(server.stop, 1.0)
            targets.update({spec.name: f"{LOOPBACK}:{port}" for spec in specs})
            servers.update({spec.name: server for spec in specs})
        channels = {}
        for name, target in targets.items():
            channels[name] = await stack.enter_async_context(grpc.aio.insecure_channel(target))
        yield Suite(settings.with_targets(**targets), servers, channels)
