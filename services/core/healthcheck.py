"""`python -m services.core.healthcheck`: exit 0 when this process's services answer SERVING.

A container's health check (deploy/compose.yaml): it asks the gRPC health of every service the
settings say the process hosts (R3MES_SERVICES), on their shared port, as Envoy does. Kubernetes
needs none of this: its probes speak grpc.health.v1 themselves (deploy/k8s).
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.core.registry import selected, shared_port
from services.core.settings import Settings

TIMEOUT_SECONDS = 2.0


def not_serving(settings: Settings) -> list[str]:
    """The hosted proto services that do not answer SERVING, with what they answered."""
    specs = selected(settings.services)
    target = f"{settings.connect_host()}:{shared_port(settings, specs)}"
    failing = []
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for spec in specs:
            request = health_pb2.HealthCheckRequest(service=spec.proto_service)
            try:
                status = health.Check(request, timeout=TIMEOUT_SECONDS).status
            except grpc.RpcError as error:
                failing.append(f"{spec.proto_service}: {error.code().name}")
                continue
            if status != health_pb2.HealthCheckResponse.SERVING:
                name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
                failing.append(f"{spec.proto_service}: {name}")
    return failing


def main() -> None:
    failing = not_serving(Settings())
    if failing:
        sys.exit("not serving: " + "; ".join(failing))


if __name__ == "__main__":
    main()
