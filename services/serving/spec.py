"""The serving service, as the registry (services.core.registry) knows it."""

from __future__ import annotations

from services.core.servicespec import ServiceSpec
from services.serving.settings import ServingSettings

SPEC = ServiceSpec(
    name="serving",
    proto_service="r3mes.serving.v1.ServingService",
    default_port=50055,
    build="services.serving.server:build",
    peers=("credits",),
    settings=ServingSettings,
)
