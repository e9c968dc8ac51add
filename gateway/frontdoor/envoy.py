"""The gateway's routes and clusters to the front door (gateway/render.py adds them)."""

from __future__ import annotations

from typing import Any

from gateway.clusters import single_host_cluster
from gateway.frontdoor.openai_door import CHAT_PATH, MODELS_PATH
from gateway.settings import GatewaySettings
from gateway.typed import typed

PAGES_CLUSTER = "frontdoor"
REFLECTION_CLUSTER = "frontdoor_grpc"
PAGE_PATHS = ("/", "/docs", "/openapi.json", "/healthz", "/favicon.ico")
DOCS_ASSETS_PREFIX = "/docs/"
REFLECTION_SERVICES = (
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
)
BUFFER_FILTER = "envoy.filters.http.buffer"
# The OpenAI-compatible door's answers last as long as the node takes to write them, so its
# routes have no overall timeout; a stream silent this long is dropped instead. Streamed chunks
# are never that far apart (serving gives up on a node silent R3MES_SERVING_NODE_TIMEOUT_SECONDS,
# 30 s), but a whole answer (`"stream": false`) arrives at once, after up to 4,096 tokens.
DOOR_IDLE_TIMEOUT = "300s"


def _reflection_route(service: str, timeout: str) -> dict[str, Any]:
    return {
        "name": service,
        "match": {"prefix": f"/{service}/"},
        # One stream per grpcurl command, which lasts well under the route timeout of any call.
        "route": {"cluster": REFLECTION_CLUSTER, "timeout": timeout},
        # The buffer filter would hold the stream's first message until the client half-closes,
        # which grpcurl never does before it has read the answer: it would hang.
        "typed_per_filter_config": {
            BUFFER_FILTER: typed(
                "extensions.filters.http.buffer.v3", "BufferPerRoute", disabled=True
            )
        },
    }


def _refused_preflight_route() -> dict[str, Any]:
    # The CORS filter answers every preflight from an allowed origin itself; one that reaches
    # the router came from an origin not allowed, and gets the front door's 403 saying so
    # rather than the catch-all's 404 "no such route".
    return {
        "name": "frontdoor/refused CORS preflight",
        "match": {
            "prefix": "/",
            "headers": [
                {"name": ":method", "string_match": {"exact": "OPTIONS"}},
                {"name": "origin", "present_match": True},
                {"name": "access-control-request-method", "present_match": True},
            ],
        },
        "route": {"cluster": PAGES_CLUSTER},
    }


def door_routes() -> list[dict[str, Any]]:
    # Envoy forwards each chunk of the answer as it arrives: no filter buffers responses.
    return [
        {
            "name": f"frontdoor{path}",
            "match": {"path": path},
            "route": {"cluster": PAGES_CLUSTER, "timeout": "0s", "idle_timeout": DOOR_IDLE_TIMEOUT},
        }
        for path in (CHAT_PATH, MODELS_PATH)
    ]


def front_door_routes(timeout: str) -> list[dict[str, Any]]:
    """Before the service routes and the catch-all: the pages, the OpenAI-compatible door,
    reflection and the refusal of preflights from origins not allowed."""
    pages = [
        {"name": f"frontdoor{path}", "match": {"path": path}, "route": {"cluster": PAGES_CLUSTER}}
        for path in PAGE_PATHS
    ]
    assets = {
        "name": "frontdoor/docs assets",
        "match": {"prefix": DOCS_ASSETS_PREFIX},
        "route": {"cluster": PAGES_CLUSTER},
    }
    reflection = [_reflection_route(s, timeout) for s in REFLECTION_SERVICES]
    return [_refused_preflight_route(), *pages, *door_routes(), assets, *reflection]


def front_door_clusters(settings: GatewaySettings) -> list[dict[str, Any]]:
    host = settings.frontdoor_host
    return [
        single_host_cluster(PAGES_CLUSTER, host, settings.frontdoor_port, http2=False),
        single_host_cluster(REFLECTION_CLUSTER, host, settings.frontdoor_grpc_port, http2=True),
    ]
