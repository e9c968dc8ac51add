"""Where each registered service listens and is reached: `R3MES_<NAME>_PORT` and
`R3MES_<NAME>_TARGET`, read for every name the registry finds, so that adding a service adds
its two settings and the kernel lists no service.

Hand-written because pydantic-settings maps a variable only to a field declared in the class;
these are gathered into the `ports` and `targets` maps of services.core.settings.Settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource

Port = Annotated[int, Field(ge=0, le=65535)]
_PORT = TypeAdapter(Port)

PORT_SUFFIX = "_PORT"
TARGET_SUFFIX = "_TARGET"


def registered_names() -> tuple[str, ...]:
    # Imported here: the registry reads the settings, which read these names from it.
    from services.core.registry import NAMES

    return NAMES


def default_port(service: str) -> int:
    from services.core.registry import spec_of

    return spec_of(service).default_port


def variable(prefix: str, service: str, suffix: str) -> str:
    return f"{prefix}{service}{suffix}".upper()


def unknown_services(names: Mapping[str, object]) -> list[str]:
    return sorted(set(names) - set(registered_names()))


class ServiceEndpoints(PydanticBaseSettingsSource):
    """The ports and targets set in the environment or the `.env` file (the environment wins),
    as `{"ports": {...}, "targets": {...}}`; pydantic-settings merges them under what the code
    passes itself (`Settings(ports={"users": 0})`)."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        environment: EnvSettingsSource,
        dotenv: EnvSettingsSource,
    ) -> None:
        super().__init__(settings_cls)
        self._environment = environment
        self._dotenv = dotenv

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        # Unused: __call__ reads the variables of every service at once.
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        prefix = self.config.get("env_prefix", "")
        ports: dict[str, int] = {}
        targets: dict[str, str] = {}
        for service in registered_names():
            port = self._lookup(variable(prefix, service, PORT_SUFFIX))
            if port is not None:
                ports[service] = _valid_port(variable(prefix, service, PORT_SUFFIX), port)
            target = self._lookup(variable(prefix, service, TARGET_SUFFIX))
            if target:
                targets[service] = target
        found: dict[str, Any] = {}
        if ports:
            found["ports"] = ports
        if targets:
            found["targets"] = targets
        return found

    def _lookup(self, name: str) -> str | None:
        for source in (self._environment, self._dotenv):
            # Both sources key their variables lower-cased unless told to be case-sensitive.
            key = name if source.case_sensitive else name.lower()
            value = source.env_vars.get(key)
            if value is not None:
                return value
        return None


def _valid_port(name: str, value: str) -> int:
    try:
        return _PORT.validate_python(value, strict=False)
    except ValidationError as error:
        # Titled by the variable, so the message says which one to fix.
        raise ValidationError.from_exception_data(name, error.errors()) from None  # type: ignore[arg-type]
