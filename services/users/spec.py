"""The users service, as the registry (services.core.registry) knows it."""

from __future__ import annotations

from services.core.servicespec import ServiceSpec
from services.users.settings import UsersSettings

SPEC = ServiceSpec(
    name="users",
    proto_service="r3mes.users.v1.UsersService",
    default_port=50051,
    build="services.users.server:build",
    peers=("credits", "mining"),
    settings=UsersSettings,
)
