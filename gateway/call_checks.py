"""The gateway's Lua filter: refuses requests a service could not answer well (headers gRPC cannot
parse, unsupported content types, bodies that are not one complete gRPC message) and caps the
calls one client address may have in flight. The script is gateway/call_checks.lua.

Envoy's own filters cannot say these: gRPC's framing and metadata grammar are unknown to them, and
Envoy counts requests in flight per cluster, never per client.
"""

from __future__ import annotations

import math
from pathlib import Path
from string import Template
from typing import Any

from gateway.catalog import UPSTREAMS
from gateway.limits import MAX_CALLS_PER_CLIENT_PER_WORKER, stream_idle_timeout_seconds
from gateway.settings import GatewaySettings
from gateway.typed import typed

NAME = "r3mes.call_checks"
_SCRIPT = Path(__file__).with_name("call_checks.lua")


class _LuaTemplate(Template):
    # Lua patterns end in `$`; `@` appears nowhere else in the script.
    delimiter = "@"


def lua_source(settings: GatewaySettings) -> str:
    prefixes = ", ".join(f'"{upstream.grpc_prefix}"' for upstream in UPSTREAMS)
    return _LuaTemplate(_SCRIPT.read_text()).substitute(
        service_prefixes=prefixes,
        max_calls_per_client=MAX_CALLS_PER_CLIENT_PER_WORKER,
        # The route timeout ends every call, and the stream idle timeout (5 s more) its reply: a
        # call whose end the filter never saw (its client reset it) stops counting then.
        call_seconds=math.ceil(stream_idle_timeout_seconds(settings)),
    )


def call_checks(settings: GatewaySettings) -> dict[str, Any]:
    return {
        "name": NAME,
        "typed_config": typed(
            "extensions.filters.http.lua.v3",
            "Lua",
            default_source_code={"inline_string": lua_source(settings)},
        ),
    }
