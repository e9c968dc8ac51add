"""The credits service, as the registry (services.core.registry) knows it."""

from __future__ import annotations

from services.core.servicespec import ServiceSpec

SPEC = ServiceSpec(
    name="credits",
    proto_service="r3mes.credits.v1.CreditsService",
    default_port=50054,
    build="services.credits.server:build",
)
