"""Envoy's tracing: the OpenTelemetry tracer on the listener, so every request through the gateway
belongs to a trace that the services continue (services.core.tracing).

Envoy continues the trace of a `traceparent` the client sent, or starts one, makes its own span
for the request (tagged with the request's `x-request-id` as `guid:x-request-id`) and sends
`traceparent` upstream with that span as the parent. With `R3MES_OTLP_ENDPOINT` set, its spans
go to that collector over OTLP/gRPC through a cluster of its own, `trace_sample_percent` of the
traces that start here.

Without a tracer Envoy passes a client's `traceparent` through untouched and starts none, so a
call from a client that sends none (curl, a browser) would have no trace id in any log line.
And Envoy (1.40) refuses a tracer without an exporter. So with no collector set the tracer is
still on, sampling nothing (the services, off too, record nothing either, services.core.tracing),
its exporter pointed at a cluster with no hosts: every request gets a `traceparent` (flagged
not sampled, unless the client's own says otherwise) that the services log and pass on, and
whatever Envoy would export has nowhere to go.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from gateway.clusters import single_host_cluster
from gateway.typed import typed
from services.core.settings import Settings

COLLECTOR_CLUSTER = "opentelemetry_collector"
SERVICE_NAME = "r3mes-gateway"
EXPORT_TIMEOUT = "1s"


def tracing(settings: Settings) -> dict[str, Any]:
    """HttpConnectionManager.tracing."""
    collector = {"envoy_grpc": {"cluster_name": COLLECTOR_CLUSTER}, "timeout": EXPORT_TIMEOUT}
    exporting = settings.otlp_endpoint is not None
    return {
        "random_sampling": {"value": settings.trace_sample_percent if exporting else 0},
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": typed(
                "config.trace.v3",
                "OpenTelemetryConfig",
                grpc_service=collector,
                service_name=SERVICE_NAME,
            ),
        },
    }


def collector_cluster(settings: Settings) -> dict[str, Any]:
    """The collector's cluster: the endpoint's host, or none (see above)."""
    if settings.otlp_endpoint is None:
        return {
            "name": COLLECTOR_CLUSTER,
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {"cluster_name": COLLECTOR_CLUSTER, "endpoints": []},
        }
    endpoint = urlsplit(settings.otlp_endpoint)
    # The setting's pattern has both.
    host, port = endpoint.hostname or "", endpoint.port or 0
    return single_host_cluster(COLLECTOR_CLUSTER, host, port, http2=True)
