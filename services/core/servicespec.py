"""How a service declares itself once (see services.core.hosting and services.core.registry).

Light on purpose: processes that load no gRPC (`make run` forks its children) read the specs,
so what needs gRPC is named as `"module:function"` and imported only when a process hosts the
service (or checks its credentials).
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

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
    # An async function of a HostContext giving the ServiceParts, or its "module:function" name
    # (what a spec declares: nothing is imported until a process hosts the service).
    build: str | Callable[[HostContext], Awaitable[ServiceParts]]
    peers: tuple[str, ...] = ()  # the services it calls
    # A service that issues credentials (apikeys: API keys) names how a process that does not
    # host it checks them ("module:function" of a HostContext giving Authenticators); a process
    # that hosts it uses its parts' own authenticators.
    authenticators_elsewhere: str | None = None
    # Its own settings (`services/<name>/settings.py`), read through `HostContext.own`; listed
    # in docs/configuration.md with the kernel's.
    settings: type[SettingsBase] | None = None

    async def parts(self, context: HostContext) -> ServiceParts:
        build = self.build
        if isinstance(build, str):
            build = cast("Callable[[HostContext], Awaitable[ServiceParts]]", _named(build))
        return await build(context)

    def authenticators_from(self, context: HostContext) -> Sequence[Authenticator] | None:
        """How a process that does not host this service checks its credentials; None when
        it issues none."""
        if self.authenticators_elsewhere is None:
            return None
        check = cast(
            "Callable[[HostContext], Sequence[Authenticator]]",
            _named(self.authenticators_elsewhere),
        )
        return check(context)

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


def _named(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)
