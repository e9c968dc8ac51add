"""The gateway's limits in one place: timeouts, header sizes, streams per connection, and the
circuit breakers of the upstream clusters. docs/operations.md ("Gateway limits") gives each number
and why; a test holds the two together.
"""

from __future__ import annotations

from typing import Any

from gateway.settings import GatewaySettings
from services.core.settings import Settings

# A whole request, headers and body, must arrive within this. Bodies are at most
# R3MES_MAX_REQUEST_BYTES (64 KiB by default): 4 s even at 128 kbit/s. A call that never sends a
# complete message would otherwise hold its stream (and the memory of its buffered body) for as
# long as the connection lives.
REQUEST_TIMEOUT_SECONDS = 5
# A connection without any stream is closed after this (browsers keep theirs ~60-300 s).
CONNECTION_IDLE_TIMEOUT_SECONDS = 60
# Streams a client may run at once on one HTTP/2 connection (RFC 9113 asks for at least 100).
MAX_CONCURRENT_STREAMS = 100
# Request headers (names and values, pseudo-headers included) and their count. The services
# accept 64 KiB (grpc.max_metadata_size, services/core/lifecycle.py): a request at this limit,
# plus what the gateway adds (x-envoy-original-path repeats the path, the request id, the
# forwarded address) and gRPC's 32 bytes of accounting per header, stays far below it. So an
# oversized request is always refused here: 431 over HTTP/1.1; over HTTP/2, Envoy's codec resets
# the stream (gRPC clients see INTERNAL).
MAX_REQUEST_HEADERS_KB = 16
MAX_REQUEST_HEADERS_COUNT = 100
# Per upstream cluster, that is all replicas of one service together. A Python replica serves
# ~200-1,000 calls/s, so 512 calls in flight are already about a second of queued work: past
# that, callers get UNAVAILABLE at once (and may retry) rather than a timeout after 15 s.
MAX_UPSTREAM_REQUESTS = 512
# Calls waiting for an upstream connection to open (HTTP/2 needs one or two per replica).
MAX_PENDING_UPSTREAM_REQUESTS = 128
# Retries in flight at once (only connect failures and refused streams are retried): enough for
# every call caught by a replica's restart, not enough to double the load of a failing service.
MAX_UPSTREAM_RETRIES = 32
MAX_UPSTREAM_CONNECTIONS = 128
# Calls per connection to a service run as `R3MES_WORKERS` processes: they share one port
# (SO_REUSEPORT), and the kernel hands each a share of the connections, never of the calls on
# one. With HTTP/2's default (one connection per Envoy worker) two workers got two connections,
# both on one process half the time; at 4 calls each, 16 calls in flight open 4 or more, and 512
# need the 128 connections above. A service of one process keeps the default: more connections
# only cost it CPU (1.34 ms per GetUser at the default, 1.52 at 4; measured).
MAX_STREAMS_PER_UPSTREAM_CONNECTION = 4


def streams_per_upstream_connection(settings: Settings) -> int | None:
    """The calls Envoy sends on one connection to a service; None: HTTP/2's default."""
    return MAX_STREAMS_PER_UPSTREAM_CONNECTION if settings.workers > 1 else None


# Envoy's worker threads. Each keeps its own count of a client's calls in flight (its Lua state is
# its own), so one client address may hold at most workers x the per-worker cap of any service's
# MAX_UPSTREAM_REQUESTS: 2 x 64 = 128, a quarter. Two workers proxy far more calls than the Python
# services behind them can answer.
ENVOY_WORKERS = 2
MAX_CALLS_PER_CLIENT_PER_WORKER = 64


def _seconds(value: float) -> str:
    return f"{value:g}s"


def stream_idle_timeout_seconds(settings: GatewaySettings) -> float:
    """A stream with no traffic either way: a little longer than a call may take (so it never cuts
    a slow call short), then it goes, e.g. a reply its client never reads."""
    return settings.gateway_route_timeout_seconds + REQUEST_TIMEOUT_SECONDS


def connection_manager_limits(settings: GatewaySettings) -> dict[str, Any]:
    """The HttpConnectionManager fields that bound what one client can hold."""
    return {
        "request_timeout": _seconds(REQUEST_TIMEOUT_SECONDS),
        "request_headers_timeout": _seconds(REQUEST_TIMEOUT_SECONDS),
        "stream_idle_timeout": _seconds(stream_idle_timeout_seconds(settings)),
        "max_request_headers_kb": MAX_REQUEST_HEADERS_KB,
        "common_http_protocol_options": {
            "idle_timeout": _seconds(CONNECTION_IDLE_TIMEOUT_SECONDS),
            "max_headers_count": MAX_REQUEST_HEADERS_COUNT,
            # `x_r3mes_internal_token` must not reach a service that folds `_` into `-`.
            "headers_with_underscores_action": "DROP_HEADER",
        },
        "http2_protocol_options": {
            "max_concurrent_streams": MAX_CONCURRENT_STREAMS,
            "initial_stream_window_size": 65536,
            "initial_connection_window_size": 1048576,
        },
    }


def circuit_breakers() -> dict[str, Any]:
    """Cluster.circuit_breakers: what one service may be asked to do at once."""
    return {
        "thresholds": [
            {
                "priority": "DEFAULT",
                "max_connections": MAX_UPSTREAM_CONNECTIONS,
                "max_pending_requests": MAX_PENDING_UPSTREAM_REQUESTS,
                "max_requests": MAX_UPSTREAM_REQUESTS,
                "max_retries": MAX_UPSTREAM_RETRIES,
            }
        ]
    }
