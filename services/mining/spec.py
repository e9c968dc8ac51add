"""The mining service, as the registry (services.core.registry) knows it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.core.servicespec import ServiceSpec
from services.mining.settings import MiningSettings

if TYPE_CHECKING:
    from services.core.hosting import HostContext, ServiceParts


async def _build(context: HostContext) -> ServiceParts:
    # Imported when hosted: the registry is read by processes that load no gRPC (make run).
    from services.mining.server import build

    return await build(context)


SPEC = ServiceSpec(
    name="mining",
    proto_service="r3mes.mining.v1.MiningService",
    default_port=50053,
    build=_build,
    settings=MiningSettings,
)
