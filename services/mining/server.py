"""Wiring of the mining service. Its RPCs are declared (protos/r3mes/mining/v1) but not built yet:
the generated base servicer answers each with UNIMPLEMENTED, after the whole interceptor chain
(authentication, validation, authorization) has run, as it will for the real handlers."""

from __future__ import annotations

from r3mes.mining.v1 import mining_pb2, mining_pb2_grpc

from services.core.lifecycle import ServiceServer, build_server, registration, run
from services.core.settings import Settings


async def create_server(settings: Settings) -> tuple[ServiceServer, int]:
    # The stubs mark every RPC abstract; the generated class itself answers UNIMPLEMENTED.
    servicer = mining_pb2_grpc.MiningServiceServicer()  # type: ignore[abstract]
    service = mining_pb2.DESCRIPTOR.services_by_name["MiningService"]
    add = mining_pb2_grpc.add_MiningServiceServicer_to_server
    return build_server(settings, "mining", [registration(add, servicer, service)])


def main() -> None:
    run(create_server)
