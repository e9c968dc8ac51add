"""`python -m services.core.healthcheck`: exit 0 when this process's services answer SERVING.

A container's health check (deploy/compose.yaml): it asks the gRPC health of every service the
settings say the process hosts (R3MES_SERVICES), on their shared port, as Envoy does. Kubernetes
needs none of this: its probes speak grpc.health.v1 themselves (deploy/k8s). The front door's
check asks its own health the same way (gateway/frontdoor/healthcheck.py).
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.core.registry import selected, shared_port
from services.core.settings import Settings

TIMEOUT_SECONDS = 2.0


def failure(health: health_pb2_grpc.HealthStub, service: str) -> str | None:
    """What `service` answered (its status, or the call's failure), None when SERVING."""
    request = health_pb2.HealthCheckRequest(service=service)
    try:
        status = health.Check(request, timeout=TIMEOUT_SECONDS).status
    except grpc.RpcError as error:
        return str(error.code().name)
    if status == health_pb2.HealthCheckResponse.SERVING:
        return None
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(status))


def not_serving(settings: Settings) -> list[str]:
    """The hosted proto services that do not answer SERVING, with what they answered."""
    specs = selected(settings.services)
    target = f"{settings.connect_host()}:{shared_port(settings, specs)}"
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        answers = {spec.proto_service: failure(health, spec.proto_service) for spec in specs}
    return [f"{service}: {answer}" for service, answer in answers.items() if answer is not None]


def main() -> None:
    failing = not_serving(Settings())
    if failing:
        sys.exit("not serving: " + "; ".join(failing))


if __name__ == "__main__":
    main()
