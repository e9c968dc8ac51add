"""The serving service, as the registry (services.core.registry) knows it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.core.servicespec import ServiceSpec
from services.serving.settings import ServingSettings

if TYPE_CHECKING:
    from services.core.hosting import HostContext, ServiceParts


async def _build(context: HostContext) -> ServiceParts:
    # Imported when hosted: the registry is read by processes that load no gRPC (make run).
    from services.serving.server import build

    return await build(context)


SPEC = ServiceSpec(
    name="serving",
    proto_service="r3mes.serving.v1.ServingService",
    default_port=50055,
    build=_build,
    peers=("credits",),
    settings=ServingSettings,
)
