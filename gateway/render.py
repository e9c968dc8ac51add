"""Render Envoy's bootstrap configuration from the settings: the one source for `make run`,
the end-to-end tests and deploy/ (compose renders it at container start; Kubernetes gets it in a
ConfigMap that `python -m tools.k8s` writes with `render`).

    python -m gateway.render --out build/envoy.yaml [--descriptor build/r3mes.binpb]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from gateway.access_log import access_log
from gateway.admin import admin_config
from gateway.call_checks import call_checks
from gateway.canary import LAYERED_RUNTIME, canaries, canary_route, canary_upstream
from gateway.catalog import UPSTREAMS
from gateway.clusters import cluster
from gateway.credentials import credential_routes
from gateway.filters import cors_policy, http_filters
from gateway.frontdoor.envoy import front_door_clusters, front_door_routes
from gateway.limits import connection_manager_limits, streams_per_upstream_connection
from gateway.local_replies import local_reply_config
from gateway.metrics import admin_cluster, metrics_listener
from gateway.paths import DESCRIPTOR_SET, ENVOY_CONFIG
from gateway.settings import GatewaySettings
from gateway.tracing import collector_cluster, tracing
from gateway.typed import typed
from services.core.auth import INTERNAL_TOKEN_HEADER
from services.core.network import GATEWAY_SECRET_HEADER
from services.core.registry import target_of

DEFAULT_DESCRIPTOR = DESCRIPTOR_SET
DEFAULT_OUTPUT = ENVOY_CONFIG
MAX_DOWNSTREAM_CONNECTIONS = 10_000
UNKNOWN_PATH_CLUSTER = "unknown_path"
GENERATED_NOTICE = "# Rendered by `python -m gateway.render`; edit gateway/*.py instead."
# Envoy's own formatter reads it from Envoy's environment: a config kept where secrets are not
# (a Kubernetes ConfigMap) then holds no secret.
GATEWAY_SECRET_FROM_ENVIRONMENT = "%ENVIRONMENT(R3MES_GATEWAY_SECRET)%"  # noqa: S105 - a reference


def _service_routes(settings: GatewaySettings, gateway_secret: str | None) -> list[dict[str, Any]]:
    # REST calls are routed after the transcoder has rewritten them to their gRPC path, so one
    # prefix per service serves REST, gRPC and gRPC-Web alike.
    shifted = canaries(settings)
    routes = []
    for upstream in UPSTREAMS:
        route = {
            "cluster": upstream.name,
            # The route timeout alone, for REST and gRPC alike: a `max_stream_duration` with
            # `grpc_timeout_header_max` would replace it (so REST calls had no limit at all)
            # and end a gRPC call by resetting its stream (INTERNAL "RST_STREAM"). A gRPC
            # client's shorter deadline still applies: the client enforces it, and it reaches
            # the service in grpc-timeout.
            "timeout": f"{settings.gateway_route_timeout_seconds:g}s",
            # Only failures where the request never reached a service: safe for every RPC.
            # Each retry goes to a replica not tried yet: a replica that just died is picked by
            # the round robin until health checks notice (seconds), and a retry to it again
            # would fail the same way.
            "retry_policy": {
                "retry_on": "connect-failure,refused-stream",
                "num_retries": 2,
                "retry_host_predicate": [
                    {
                        "name": "envoy.retry_host_predicates.previous_hosts",
                        "typed_config": typed(
                            "extensions.retry.host.previous_hosts.v3", "PreviousHostsPredicate"
                        ),
                    }
                ],
                "host_selection_retry_max_attempts": 3,
            },
        }
        if upstream in shifted:
            routes.append(
                canary_route(upstream, shifted[upstream], route, _vouching(gateway_secret))
            )
        routes.append(
            {
                "name": upstream.name,
                "match": {"prefix": upstream.grpc_prefix},
                "route": route,
                **_vouching(gateway_secret),
            }
        )
    return routes


def _vouching(gateway_secret: str | None) -> dict[str, Any]:
    # The services believe the x-forwarded-for below only on calls that carry this secret: a
    # process on the gateway's host shares its address, not its secret. Without one, they
    # believe no forwarded address at all, so nothing is added.
    if gateway_secret is None:
        return {}
    header = {"key": GATEWAY_SECRET_HEADER, "value": gateway_secret}
    return {
        "request_headers_to_add": [
            {"header": header, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
        ]
    }


def _unknown_path_route() -> dict[str, Any]:
    # Every other path, REST paths before transcoding included: the CORS filter needs a route to
    # find its policy (a direct_response route would make it step aside, so preflights would
    # fail). The cluster deliberately does not exist: Envoy answers 404 without calling anyone.
    return {
        "name": UNKNOWN_PATH_CLUSTER,
        "match": {"prefix": "/"},
        "route": {"cluster": UNKNOWN_PATH_CLUSTER, "cluster_not_found_response_code": "NOT_FOUND"},
    }


def _route_config(settings: GatewaySettings, gateway_secret: str | None) -> dict[str, Any]:
    timeout = f"{settings.gateway_route_timeout_seconds:g}s"
    return {
        "name": "r3mes",
        # Needed for the unknown-path route, whose cluster is missing on purpose.
        "validate_clusters": False,
        "virtual_hosts": [
            {
                "name": "r3mes",
                "domains": ["*"],
                "routes": [
                    *credential_routes(),
                    *front_door_routes(timeout),
                    *_service_routes(settings, gateway_secret),
                    _unknown_path_route(),
                ],
                "typed_per_filter_config": {
                    "envoy.filters.http.cors": cors_policy(
                        [*settings.cors_origins, *settings.console_origins()]
                    )
                },
                # The header filter already removed every x-r3mes-* header; naming the token here
                # too keeps it out even if someone reorders or drops that filter.
                "request_headers_to_remove": [INTERNAL_TOKEN_HEADER],
                "request_headers_to_add": [
                    {
                        # Services believe x-forwarded-for from the gateway only, so the gateway
                        # sends exactly one address: the client as Envoy determined it, after
                        # skipping `xff_num_trusted_hops` proxies. Whatever a caller put in the
                        # header itself is never passed on.
                        "header": {
                            "key": "x-forwarded-for",
                            "value": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
                        },
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                    }
                ],
            }
        ],
    }


def _connection_manager(
    settings: GatewaySettings, descriptor_path: Path, gateway_secret: str | None
) -> dict[str, Any]:
    return typed(
        "extensions.filters.network.http_connection_manager.v3",
        "HttpConnectionManager",
        **_connection_manager_fields(settings, descriptor_path, gateway_secret),
    )


def _connection_manager_fields(
    settings: GatewaySettings, descriptor_path: Path, gateway_secret: str | None
) -> dict[str, Any]:
    return {
        "stat_prefix": "r3mes",
        "codec_type": "AUTO",
        "use_remote_address": True,
        "xff_num_trusted_hops": settings.gateway_trusted_hops,
        "generate_request_id": True,
        "always_set_request_id_in_response": True,
        "normalize_path": True,
        "merge_slashes": True,
        **connection_manager_limits(settings),
        # Say nothing about what runs here: no `server: envoy` on Envoy's own replies, and the
        # services send none.
        "server_header_transformation": "PASS_THROUGH",
        "access_log": access_log(settings.log_json),
        "tracing": tracing(settings),
        "local_reply_config": local_reply_config(),
        "route_config": _route_config(settings, gateway_secret),
        "http_filters": http_filters(
            descriptor_path, settings.max_request_bytes, call_checks(settings)
        ),
    }


def _metrics(settings: GatewaySettings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The metrics listener and admin's cluster, when a metrics port is set."""
    port = settings.gateway_metrics_port
    if port is None:
        return [], []
    return [metrics_listener(settings, port)], [admin_cluster(settings)]


def build_config(
    settings: GatewaySettings, descriptor_path: Path, *, gateway_secret: str | None = None
) -> dict[str, Any]:
    """Envoy's bootstrap as a plain dict (YAML- and JSON-serializable). `gateway_secret`, when
    given, is sent instead of the settings' (GATEWAY_SECRET_FROM_ENVIRONMENT, say)."""
    gateway_secret = gateway_secret or settings.gateway_secret_value()
    metrics_listeners, metrics_clusters = _metrics(settings)
    streams = streams_per_upstream_connection(settings)
    return {
        "node": {"id": "r3mes-gateway", "cluster": "r3mes-gateway"},
        "admin": admin_config(settings),
        "layered_runtime": LAYERED_RUNTIME,
        "static_resources": {
            "listeners": [
                {
                    "name": "r3mes_http",
                    "address": {
                        "socket_address": {
                            "address": settings.listen_host,
                            "port_value": settings.gateway_port,
                        }
                    },
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": _connection_manager(
                                        settings, descriptor_path, gateway_secret
                                    ),
                                }
                            ]
                        }
                    ],
                },
                *metrics_listeners,
            ],
            "clusters": [
                *(cluster(u, target_of(settings, u.name), streams) for u in UPSTREAMS),
                *(
                    cluster(canary_upstream(u), c.target, streams)
                    for u, c in canaries(settings).items()
                ),
                *front_door_clusters(settings),
                *metrics_clusters,
                collector_cluster(settings),
            ],
        },
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": typed(
                        "extensions.resource_monitors.downstream_connections.v3",
                        "DownstreamConnectionsConfig",
                        max_active_downstream_connections=MAX_DOWNSTREAM_CONNECTIONS,
                    ),
                }
            ]
        },
    }


def write_config(settings: GatewaySettings, descriptor: Path, output: Path) -> Path:
    """Write Envoy's config to `output`, pointing at the descriptor set `make protos` built."""
    if not descriptor.is_file():
        raise FileNotFoundError(f"{descriptor} is missing: run `make protos` first")
    output.parent.mkdir(parents=True, exist_ok=True)
    # It holds the gateway secret: readable by its owner (Envoy) alone.
    output.touch(mode=0o600)
    output.chmod(0o600)
    output.write_text(render(settings, descriptor.resolve()))
    return output


def render(
    settings: GatewaySettings, descriptor: Path, *, gateway_secret: str | None = None
) -> str:
    """The config file's text, for a descriptor set at `descriptor` where Envoy runs."""
    config = build_config(settings, descriptor, gateway_secret=gateway_secret)
    return f"{GENERATED_NOTICE}\n{yaml.safe_dump(config, sort_keys=False)}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--descriptor", type=Path, default=DEFAULT_DESCRIPTOR)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    print(write_config(GatewaySettings(), args.descriptor, args.out))


if __name__ == "__main__":
    main()
