"""The mining service, as the registry (services.core.registry) knows it."""

from __future__ import annotations

from services.core.servicespec import ServiceSpec
from services.mining.settings import MiningSettings

SPEC = ServiceSpec(
    name="mining",
    proto_service="r3mes.mining.v1.MiningService",
    default_port=50053,
    build="services.mining.server:build",
    settings=MiningSettings,
)
