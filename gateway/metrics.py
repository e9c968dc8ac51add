"""Envoy's own statistics for the scraper, without opening its admin (gateway/render.py adds
these when R3MES_GATEWAY_METRICS_PORT is set).

Admin can stop Envoy and dump its configuration, and checks neither Origin nor Host
(gateway/admin.py), so it is never put on a port for Prometheus. Instead a listener of its own
answers exactly one request, `GET /metrics`, by forwarding it to admin's
`/stats/prometheus` through a cluster whose only endpoint is admin (its unix socket, or its
loopback port); every other path or method gets a 404 from Envoy itself.
"""

from __future__ import annotations

from typing import Any

from gateway.admin import ADMIN_HOST, admin_endpoint
from gateway.settings import GatewaySettings
from gateway.typed import typed
from services.core.settings import Settings

METRICS_PATH = "/metrics"
ADMIN_STATS_PATH = "/stats/prometheus"
ADMIN_CLUSTER = "envoy_admin"
METRICS_LISTENER = "r3mes_metrics"
SCRAPE_TIMEOUT = "5s"


def admin_cluster(settings: GatewaySettings) -> dict[str, Any]:
    endpoint = admin_endpoint(settings)
    if isinstance(endpoint, int):
        address = {"socket_address": {"address": ADMIN_HOST, "port_value": endpoint}}
    else:
        address = {"pipe": {"path": str(endpoint)}}
    return {
        "name": ADMIN_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": ADMIN_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
    }


def metrics_listener(settings: Settings, port: int) -> dict[str, Any]:
    routes = [
        {
            "name": "metrics",
            "match": {
                "path": METRICS_PATH,
                "headers": [{"name": ":method", "string_match": {"exact": "GET"}}],
            },
            "route": {
                "cluster": ADMIN_CLUSTER,
                "prefix_rewrite": ADMIN_STATS_PATH,
                "timeout": SCRAPE_TIMEOUT,
            },
        },
        {"name": "nothing_else", "match": {"prefix": "/"}, "direct_response": {"status": 404}},
    ]
    manager = typed(
        "extensions.filters.network.http_connection_manager.v3",
        "HttpConnectionManager",
        stat_prefix="r3mes_metrics",
        codec_type="AUTO",
        normalize_path=True,
        merge_slashes=True,
        route_config={
            "name": "metrics",
            "virtual_hosts": [{"name": "metrics", "domains": ["*"], "routes": routes}],
        },
        http_filters=[
            {
                "name": "envoy.filters.http.router",
                "typed_config": typed("extensions.filters.http.router.v3", "Router"),
            }
        ],
    )
    return {
        "name": METRICS_LISTENER,
        "address": {"socket_address": {"address": settings.listen_host, "port_value": port}},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": manager,
                    }
                ]
            }
        ],
    }
