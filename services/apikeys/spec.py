"""The apikeys service, as the registry (services.core.registry) knows it."""

from __future__ import annotations

from services.apikeys.settings import APIKeysSettings
from services.core.servicespec import ServiceSpec

SPEC = ServiceSpec(
    name="apikeys",
    proto_service="r3mes.apikeys.v1.APIKeysService",
    default_port=50052,
    build="services.apikeys.server:build",
    authenticators_elsewhere="services.apikeys.authentication:checks_elsewhere",
    settings=APIKeysSettings,
)
