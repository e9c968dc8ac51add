"""Where a checkout keeps what the gateway reads and the tools write, defined once."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
# The protos' descriptor set (tools/protos.py writes it): Envoy's transcoder and the OpenAPI
# generator read it.
DESCRIPTOR_SET = BUILD / "r3mes.binpb"
# Envoy's rendered bootstrap (gateway/render.py).
ENVOY_CONFIG = BUILD / "envoy.yaml"
# The OpenAPI document (tools/openapi.py writes it; the front door serves it).
OPENAPI_DOCUMENT = ROOT / "gateway" / "openapi.json"
GEN = ROOT / "gen"
