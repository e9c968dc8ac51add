"""The gRPC health of every service and of its database, asked in parallel, for `/healthz`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.core.registry import NAMES, spec_of, target_of
from services.core.settings import Settings

CHECK_TIMEOUT_SECONDS = 1.0
UNREACHABLE = "UNREACHABLE"
# A channel that failed to connect waits before trying again; capped low so a service that
# came back is seen as serving within a second, not after gRPC's default backoff of minutes.
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


@dataclass(frozen=True)
class Report:
    """Each service's status: SERVING, NOT_SERVING, UNKNOWN, SERVICE_UNKNOWN or UNREACHABLE;
    and each one's database (`<service>.database`), as the service's own probe last found it,
    for the services that answered."""

    statuses: Mapping[str, str]
    components: Mapping[str, str] = field(default_factory=dict)

    @property
    def not_serving(self) -> list[str]:
        parts = {**self.statuses, **self.components}
        return [name for name, status in parts.items() if status != "SERVING"]

    def as_json(self) -> dict[str, object]:
        return {
            "status": "NOT_SERVING" if self.not_serving else "SERVING",
            "services": dict(self.statuses),
            "components": dict(self.components),
            "not_serving": self.not_serving,
        }


class HealthChecker:
    """One long-lived channel per service (so a check costs one RPC, not a connection)."""

    def __init__(self, settings: Settings) -> None:
        self._channels = {
            name: grpc.insecure_channel(target_of(settings, name), options=_CHANNEL_OPTIONS)
            for name in NAMES
        }

    def check(self) -> Report:
        # By proto service, not the whole server (""): a process that serves but hosts another
        # service (a target left pointing elsewhere) reports it SERVICE_UNKNOWN.
        calls = {
            name: [
                health_pb2_grpc.HealthStub(channel).Check.future(
                    health_pb2.HealthCheckRequest(service=health_name),
                    timeout=CHECK_TIMEOUT_SECONDS,
                )
                for health_name in (spec_of(name).proto_service, spec_of(name).database_health_name)
            ]
            for name, channel in self._channels.items()
        }
        statuses: dict[str, str] = {}
        components: dict[str, str] = {}
        for name, (service_call, database_call) in calls.items():
            statuses[name] = _status(service_call)
            database = _status(database_call)
            # Only of a service that answered; one without a database says NOT_FOUND for it.
            if statuses[name] != UNREACHABLE and database != UNREACHABLE:
                components[spec_of(name).database_health_name] = database
        return Report(statuses, components)

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()


def _status(call: grpc.Future) -> str:  # type: ignore[type-arg]
    try:
        reply = call.result()
    except grpc.RpcError:
        return UNREACHABLE
    status: str = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return status
