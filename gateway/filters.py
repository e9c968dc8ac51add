"""The HTTP filter chain of the gateway's listener, in the order Envoy runs it on a request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.access_log import grpc_status_recorder
from gateway.catalog import UPSTREAMS
from gateway.typed import typed
from services.core.auth import INTERNAL_HEADER_PREFIX

CORS_ALLOW_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
CORS_ALLOW_HEADERS = (
    "x-api-key",
    "authorization",
    "content-type",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
)
CORS_EXPOSE_HEADERS = (
    "ratelimit-policy",
    "ratelimit",
    "retry-after",
    "x-request-id",
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
)
CORS_MAX_AGE_SECONDS = 600


def _filter(name: str, config_type: str, **config: Any) -> dict[str, Any]:
    """`config_type` is relative to envoy.extensions.filters.http, e.g. "cors.v3.Cors"."""
    package, message = config_type.rsplit(".", 1)
    return {
        "name": name,
        "typed_config": typed(f"extensions.filters.http.{package}", message, **config),
    }


def cors_policy(origins: list[str]) -> dict[str, Any]:
    """The CorsPolicy every route shares (set on the virtual host, read by the CORS filter)."""
    if "*" in origins:
        matchers: list[dict[str, Any]] = [{"safe_regex": {"regex": ".*"}}]
    else:
        matchers = [{"exact": origin} for origin in origins]
    return typed(
        "extensions.filters.http.cors.v3",
        "CorsPolicy",
        allow_origin_string_match=matchers,
        allow_methods=",".join(CORS_ALLOW_METHODS),
        allow_headers=",".join(CORS_ALLOW_HEADERS),
        expose_headers=",".join(CORS_EXPOSE_HEADERS),
        max_age=str(CORS_MAX_AGE_SECONDS),
        # API keys travel in headers, never in cookies, so credentials are not needed.
        allow_credentials=False,
    )


def cors() -> dict[str, Any]:
    # First, so that preflights are answered before anything else runs and so that the CORS
    # response headers are added to every reply, errors produced by later filters included.
    return _filter("envoy.filters.http.cors", "cors.v3.Cors")


def strip_internal_headers() -> dict[str, Any]:
    """Remove every x-r3mes-* header a caller sent, before any other filter can read it.

    The services trust these headers (the internal service token above all) because only
    services set them; a browser or any other outside caller must never be able to.
    """
    return _filter(
        "r3mes.strip_internal_headers",
        "header_mutation.v3.HeaderMutation",
        mutations={
            "request_mutations": [
                {
                    "remove_on_match": {
                        "key_matcher": {"prefix": INTERNAL_HEADER_PREFIX, "ignore_case": True}
                    }
                }
            ]
        },
    )


# Names gRPC allows in metadata (lowercase letters, digits, `-`, `_`, `.`) and pseudo-headers.
# HTTP allows more (`a!b`, `%x`); a gRPC server refuses a call carrying one with INTERNAL
# "Illegal header key", so such a header never reaches a service. Full-match regex (RE2): a
# name that is not a pseudo-header and holds any other character.
_NOT_GRPC_METADATA = r"[^:][0-9a-z_.\-]*[^0-9a-z_.\-].*|[^0-9a-z_.\-:].*"


def drop_non_grpc_headers() -> dict[str, Any]:
    """Remove request headers whose names gRPC metadata cannot carry (HTTP/1 names arrive
    lowercased, so only the characters matter)."""
    return _filter(
        "r3mes.drop_non_grpc_headers",
        "header_mutation.v3.HeaderMutation",
        mutations={
            "request_mutations": [
                {"remove_on_match": {"key_matcher": {"safe_regex": {"regex": _NOT_GRPC_METADATA}}}}
            ]
        },
    )


def body_limit(max_request_bytes: int) -> dict[str, Any]:
    # Every RPC is unary, so buffering a whole request costs nothing a streaming call would need.
    # Envoy refuses with 413 a body it has to buffer beyond this: every REST body, and gRPC or
    # gRPC-Web bodies that span more than one read (HTTP/2 frames are at most 16 KiB), so the
    # limit is exact for REST and for gRPC whenever it is 16 KiB or more.
    return _filter(
        "envoy.filters.http.buffer", "buffer.v3.Buffer", max_request_bytes=max_request_bytes
    )


def grpc_web() -> dict[str, Any]:
    return _filter("envoy.filters.http.grpc_web", "grpc_web.v3.GrpcWeb")


def json_transcoder(descriptor_path: Path, max_request_bytes: int) -> dict[str, Any]:
    return _filter(
        "envoy.filters.http.grpc_json_transcoder",
        "grpc_json_transcoder.v3.GrpcJsonTranscoder",
        proto_descriptor=str(descriptor_path),
        services=[upstream.proto_service for upstream in UPSTREAMS],
        print_options={
            "add_whitespace": False,
            "always_print_primitive_fields": True,
            "always_print_enums_as_ints": False,
            "preserve_proto_field_names": True,
        },
        convert_grpc_status=True,
        ignore_unknown_query_parameters=True,
        case_insensitive_enum_parsing=True,
        # `a+b` in a query string is `a b`, as browsers' URLSearchParams encode it.
        query_param_unescape_plus=True,
        # The buffer filter's limit applies only once some filter buffers; the transcoder always
        # does, and with its own limit a JSON body one byte too large is refused exactly.
        max_request_body_size=max_request_bytes,
    )


def router() -> dict[str, Any]:
    # No x-envoy-upstream-service-time (nor any other x-envoy-*) in replies, nor in what reaches
    # the services: callers learn nothing of what runs behind the port.
    return _filter("envoy.filters.http.router", "router.v3.Router", suppress_envoy_headers=True)


def http_filters(
    descriptor_path: Path, max_request_bytes: int, call_checks: dict[str, Any]
) -> list[dict[str, Any]]:
    """`call_checks` (gateway/call_checks.py) sees whole requests, gRPC-Web already made gRPC, and
    REST calls before the transcoder gives them a gRPC path."""
    return [
        cors(),
        strip_internal_headers(),
        drop_non_grpc_headers(),
        body_limit(max_request_bytes),
        grpc_web(),
        call_checks,
        json_transcoder(descriptor_path, max_request_bytes),
        grpc_status_recorder(),
        router(),
    ]
