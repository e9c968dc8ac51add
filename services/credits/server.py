"""Wiring of the credits service. Its RPCs are declared (protos/r3mes/credits/v1) but not built yet:
the generated base servicer answers each with UNIMPLEMENTED, after the whole interceptor chain
(authentication, validation, authorization) has run, as it will for the real handlers."""

from __future__ import annotations

from r3mes.credits.v1 import credits_pb2, credits_pb2_grpc

from services.core.lifecycle import ServiceServer, build_server, registration, run
from services.core.settings import Settings


async def create_server(settings: Settings) -> tuple[ServiceServer, int]:
    # The stubs mark every RPC abstract; the generated class itself answers UNIMPLEMENTED.
    servicer = credits_pb2_grpc.CreditsServiceServicer()  # type: ignore[abstract]
    service = credits_pb2.DESCRIPTOR.services_by_name["CreditsService"]
    add = credits_pb2_grpc.add_CreditsServiceServicer_to_server
    return build_server(settings, "credits", [registration(add, servicer, service)])


def main() -> None:
    run(create_server)
