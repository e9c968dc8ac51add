"""Every service, found by looking: a package `services/<name>/` whose `spec.py` exports `SPEC`
(a services.core.servicespec.ServiceSpec). Adding a service is its folder; nothing else lists
services by hand (tests/unit/test_registry.py checks that). The kernel still names no service:
the specs are imported by name found on disk, which no import contract sees as a dependency.

Also what follows from the specs and the topology: which services a process hosts, and where
each service is reached. Light on purpose: processes that load no gRPC read it (make run).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Sequence
from typing import TypeVar

import services
from services.core.servicespec import ServiceSpec
from services.core.settings import Settings, SettingsBase

SettingsT = TypeVar("SettingsT", bound=Settings)

KERNEL = "core"
ALL = "all"


def discover() -> tuple[ServiceSpec, ...]:
    """The specs of every service package, in the order of their default ports."""
    specs = []
    for module in pkgutil.iter_modules(services.__path__):
        if not module.ispkg or module.name == KERNEL:
            continue
        spec = importlib.import_module(f"services.{module.name}.spec").SPEC
        if not isinstance(spec, ServiceSpec) or spec.name != module.name:
            raise TypeError(f"services/{module.name}/spec.py must export the SPEC of its service")
        specs.append(spec)
    return tuple(sorted(specs, key=lambda spec: spec.default_port))


SERVICES: tuple[ServiceSpec, ...] = discover()
NAMES: tuple[str, ...] = tuple(spec.name for spec in SERVICES)


def spec_of(name: str) -> ServiceSpec:
    return next(spec for spec in SERVICES if spec.name == name)


def implementing(proto_service: str) -> ServiceSpec:
    """The service whose API is `proto_service` (a full name, as a client's generated code gives
    it): how a client of one API finds where it is reached without naming a service folder."""
    for spec in SERVICES:
        if spec.proto_service == proto_service:
            return spec
    raise LookupError(f"no registered service implements {proto_service}")


def selected(selection: str) -> list[ServiceSpec]:
    """`all` or names separated by commas (`users,credits`), in registry order."""
    if selection.strip() == ALL:
        return list(SERVICES)
    names = {name.strip() for name in selection.split(",") if name.strip()}
    unknown = sorted(names - set(NAMES))
    if unknown or not names:
        raise ValueError(
            f"unknown services {unknown or [selection]}: choose {ALL} or among {', '.join(NAMES)}"
        )
    return [spec for spec in SERVICES if spec.name in names]


def settings_classes() -> list[type[SettingsBase]]:
    """The kernel's settings and each service's own, in registry order."""
    return [Settings, *(spec.settings for spec in SERVICES if spec.settings is not None)]


def shared_port(settings: Settings, specs: Sequence[ServiceSpec] = SERVICES) -> int:
    """The one port of a process hosting `specs`: its first service's."""
    return settings.port_of(specs[0].name)


def target_of(settings: Settings, name: str) -> str:
    """Where service `name` is reached under the settings' topology: its target when set;
    otherwise in one process, that process's port; split, its own port."""
    if not settings.target_set(name) and settings.topology == "one-process":
        return f"{settings.connect_host()}:{shared_port(settings)}"
    return settings.target_of(name)


def resolved(settings: SettingsT) -> SettingsT:
    """The settings with every service's target spelled out for the topology, for processes
    that reach services but host none (Envoy, the front door, `make run`)."""
    return settings.with_targets(**{name: target_of(settings, name) for name in NAMES})
