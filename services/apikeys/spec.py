"""The apikeys service, as the registry (services.core.registry) knows it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.apikeys.settings import APIKeysSettings
from services.core.servicespec import ServiceSpec

if TYPE_CHECKING:
    from services.core.auth import Authenticator
    from services.core.hosting import HostContext, ServiceParts


async def _build(context: HostContext) -> ServiceParts:
    # Imported when hosted: the registry is read by processes that load no gRPC (make run).
    from services.apikeys.server import build

    return await build(context)


def _authenticators_elsewhere(context: HostContext) -> list[Authenticator]:
    from services.apikeys.authentication import authenticators_for

    own = context.own(APIKeysSettings)
    return authenticators_for(context.settings, own, context.clients, context.clock)


SPEC = ServiceSpec(
    name="apikeys",
    proto_service="r3mes.apikeys.v1.APIKeysService",
    default_port=50052,
    build=_build,
    authenticators_elsewhere=_authenticators_elsewhere,
    settings=APIKeysSettings,
)
