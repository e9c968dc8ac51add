"""Wiring of the apikeys service. Its RPCs are declared (protos/r3mes/apikeys/v1) but not built yet:
the generated base servicer answers each with UNIMPLEMENTED, after the whole interceptor chain
(authentication, validation, authorization) has run, as it will for the real handlers."""

from __future__ import annotations

from r3mes.apikeys.v1 import apikeys_pb2, apikeys_pb2_grpc

from services.core.lifecycle import ServiceServer, build_server, run
from services.core.settings import Settings

SERVICE_FULL_NAME = apikeys_pb2.DESCRIPTOR.services_by_name["APIKeysService"].full_name


async def create_server(settings: Settings) -> tuple[ServiceServer, int]:
    # The stubs mark every RPC abstract; the generated class itself answers UNIMPLEMENTED.
    servicer = apikeys_pb2_grpc.APIKeysServiceServicer()  # type: ignore[abstract]
    return build_server(
        settings,
        "apikeys",
        [
            (
                lambda server: apikeys_pb2_grpc.add_APIKeysServiceServicer_to_server(
                    servicer, server
                ),
                SERVICE_FULL_NAME,
            )
        ],
    )


def main() -> None:
    run(create_server)
