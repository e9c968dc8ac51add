"""The four services as the gateway sees them: the proto service each one serves."""

from __future__ import annotations

from dataclasses import dataclass

from services.core.settings import SERVICE_NAMES, ServiceName


@dataclass(frozen=True)
class Upstream:
    """One gRPC service behind the gateway; `name` is also its Envoy cluster name."""

    name: ServiceName
    proto_service: str

    @property
    def grpc_prefix(self) -> str:
        """Path prefix of every gRPC (and transcoded REST) call to this service."""
        return f"/{self.proto_service}/"


# Package versions follow protos/r3mes/<name>/v1; a v2 would be added here beside v1.
_PROTO_SERVICES: dict[ServiceName, str] = {
    "users": "r3mes.users.v1.UsersService",
    "apikeys": "r3mes.apikeys.v1.APIKeysService",
    "mining": "r3mes.mining.v1.MiningService",
    "credits": "r3mes.credits.v1.CreditsService",
}

UPSTREAMS: tuple[Upstream, ...] = tuple(Upstream(n, _PROTO_SERVICES[n]) for n in SERVICE_NAMES)
