"""How a service declares itself once (see services.core.hosting and services.core.registry).

Light on purpose: processes that load no gRPC (`make run` forks its children) read the specs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.core.auth import Authenticator
    from services.core.hosting import HostContext, ServiceParts
    from services.core.settings import SettingsBase


# The part of a service that health reports apart, as `<service>.database` (services.core.hosting
# probes it; the front door's /healthz reads it).
DATABASE_COMPONENT = "database"


@dataclass(frozen=True)
class ServiceSpec:
    """A service, declared once: settings, gateway, front door, deploy/ and tests derive from
    these. Its port is the setting `R3MES_<NAME>_PORT`, its target `R3MES_<NAME>_TARGET`, its
    schema (or SQLite file) `<name>`, its migrations `services/<name>/migrations/`."""

    name: str
    proto_service: str  # full name, e.g. r3mes.users.v1.UsersService
    default_port: int  # also the services' order: a process of several listens on its first's
    build: Callable[[HostContext], Awaitable[ServiceParts]]
    peers: tuple[str, ...] = ()  # the services it calls
    # A service that issues credentials (apikeys: API keys) says how a process that does not
    # host it checks them; a process that hosts it uses its parts' own authenticators.
    authenticators_elsewhere: Callable[[HostContext], Sequence[Authenticator]] | None = None
    # Its own settings (`services/<name>/settings.py`), read through `HostContext.own`; listed
    # in docs/configuration.md with the kernel's.
    settings: type[SettingsBase] | None = None

    @property
    def error_domain(self) -> str:
        return f"{self.name}.r3mes.network"

    @property
    def database_health_name(self) -> str:
        return f"{self.name}.{DATABASE_COMPONENT}"

    @property
    def port_setting(self) -> str:
        return f"R3MES_{self.name.upper()}_PORT"

    @property
    def target_setting(self) -> str:
        return f"R3MES_{self.name.upper()}_TARGET"
