"""Wiring of the apikeys service. Its RPCs are declared (protos/r3mes/apikeys/v1) but not built yet:
the generated base servicer answers each with UNIMPLEMENTED, after the whole interceptor chain
(authentication, validation, authorization) has run, as it will for the real handlers."""

from __future__ import annotations

from r3mes.apikeys.v1 import apikeys_pb2, apikeys_pb2_grpc

from services.core.lifecycle import ServiceServer, build_server, registration, run
from services.core.settings import Settings


async def create_server(settings: Settings) -> tuple[ServiceServer, int]:
    # The stubs mark every RPC abstract; the generated class itself answers UNIMPLEMENTED.
    servicer = apikeys_pb2_grpc.APIKeysServiceServicer()  # type: ignore[abstract]
    service = apikeys_pb2.DESCRIPTOR.services_by_name["APIKeysService"]
    add = apikeys_pb2_grpc.add_APIKeysServiceServicer_to_server
    return build_server(settings, "apikeys", [registration(add, servicer, service)])


def main() -> None:
    run(create_server)
