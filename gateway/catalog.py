"""The services as the gateway sees them: the proto service of each (services.core.registry)."""

from __future__ import annotations

from dataclasses import dataclass

from services.core.registry import SERVICES


@dataclass(frozen=True)
class Upstream:
    """One gRPC service behind the gateway; `name` is also its Envoy cluster name."""

    name: str
    proto_service: str

    @property
    def grpc_prefix(self) -> str:
        """Path prefix of every gRPC (and transcoded REST) call to this service."""
        return f"/{self.proto_service}/"


UPSTREAMS: tuple[Upstream, ...] = tuple(Upstream(s.name, s.proto_service) for s in SERVICES)
