"""Envoy's typed configs: `{"@type": "type.googleapis.com/envoy.<package>.<Message>", ...}`."""

from __future__ import annotations

from typing import Any


def typed(package: str, message: str, **fields: Any) -> dict[str, Any]:
    """`package` is relative to `envoy.`, e.g. ("extensions.filters.http.cors.v3", "Cors")."""
    return {"@type": f"type.googleapis.com/envoy.{package}.{message}", **fields}
