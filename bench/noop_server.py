"""A no-op unary RPC on our server stack: the floor every RPC of the suite stands on.

    python -m bench.noop_server [--bare]   (settings from R3MES_*, port from R3MES_USERS_PORT)

The server is assembled by `build_server`, so a call passes the same interceptor chain as every
service's (request context and its INFO access line, error mapping, authentication, validation,
authorization) and then returns an Empty. grpc.health.v1.Health/Check would pass the chain too,
but its access line is logged at DEBUG (balancers call it every few seconds), so it would leave
out a cost every real RPC pays. The method is outside the `r3mes.` package, so authorization
only checks the prefix, as it does for health and reflection.

`--bare` serves the same handler on a plain grpc.aio server, no interceptors (health only, for
the readiness probe): the floor under the floor, so the chain's own cost shows.
"""

from __future__ import annotations

import sys
from typing import Any

import grpc
from google.protobuf.empty_pb2 import Empty
from grpc_health.v1 import health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from services.core.lifecycle import ServiceServer, build_server, run
from services.core.settings import Settings

SERVICE = "bench.v1.NoopService"
METHOD = "Noop"
FULL_METHOD = f"/{SERVICE}/{METHOD}"


async def noop(request: Empty, context: grpc.aio.ServicerContext[Any, Any]) -> Empty:
    return Empty()


def noop_handler() -> grpc.GenericRpcHandler:
    method = grpc.unary_unary_rpc_method_handler(
        noop, request_deserializer=Empty.FromString, response_serializer=Empty.SerializeToString
    )
    return grpc.method_handlers_generic_handler(SERVICE, {METHOD: method})


async def create_server(settings: Settings) -> tuple[ServiceServer, int]:
    # build_server names a server after one of the four services (for its port and error
    # domain); "users" lends both, and nothing here touches users' storage or peers.
    return build_server(
        settings,
        "users",
        [(lambda server: server.add_generic_rpc_handlers((noop_handler(),)), SERVICE)],
    )


async def create_bare_server(settings: Settings) -> tuple[ServiceServer, int]:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((noop_handler(),))
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port(f"{settings.listen_host}:{settings.port_of('users')}")
    return ServiceServer("users", server, health, [SERVICE], []), port


if __name__ == "__main__":
    run(create_bare_server if "--bare" in sys.argv[1:] else create_server)
