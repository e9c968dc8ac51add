"""`python -m gateway.frontdoor.healthcheck`: exit 0 while the front door answers SERVING.

The front door container's health check (deploy/compose.yaml): the gRPC health of the front door
itself (`""` on R3MES_FRONTDOOR_GRPC_PORT), as Envoy's check of its cluster and the Kubernetes
probes (deploy/k8s) ask it. Not `/healthz`: that is every service's health, and a service that is
down leaves the front door healthy (its `/healthz` says which is down).
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2_grpc

from gateway.settings import GatewaySettings
from services.core.healthcheck import failure


def not_serving(settings: GatewaySettings) -> str | None:
    """What the front door answered, None when SERVING."""
    target = f"{settings.connect_host()}:{settings.frontdoor_grpc_port}"
    with grpc.insecure_channel(target) as channel:
        return failure(health_pb2_grpc.HealthStub(channel), "")


def main() -> None:
    answer = not_serving(GatewaySettings())
    if answer is not None:
        sys.exit(f"not serving: the front door: {answer}")


if __name__ == "__main__":
    main()
