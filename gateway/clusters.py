"""One HTTP/2 upstream cluster per service, health-checked over grpc.health.v1.

A service's target is a gRPC target, as its peers' channels read it: `host:port` (a DNS name
may resolve to several replicas), or several addresses in gRPC's own form,
`ipv4:10.0.0.7:50054,10.0.0.8:50054` (replicas on fixed addresses, or on several ports of one
host as the tests' stacks run them), each a host of the cluster. Also the clusters of single
processes (the front door, a trace collector)."""

from __future__ import annotations

import ipaddress
from typing import Any

from gateway.catalog import Upstream
from gateway.limits import circuit_breakers
from gateway.typed import typed

CONNECT_TIMEOUT = "1s"
HEALTH_CHECK_INTERVAL = "5s"
DNS_REFRESH_RATE = "5s"


# gRPC's naming scheme for a list of literal addresses (grpc/doc/naming.md).
ADDRESS_LIST_SCHEME = "ipv4:"


def split_target(target: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port)."""
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"upstream target {target!r} is not host:port")
    return host.strip("[]"), int(port)


def endpoints(target: str) -> list[tuple[str, int]]:
    """Every (host, port) a target names: one, or each of an `ipv4:` list."""
    if not target.startswith(ADDRESS_LIST_SCHEME):
        return [split_target(target)]
    listed = [split_target(a) for a in target.removeprefix(ADDRESS_LIST_SCHEME).split(",")]
    names = [host for host, _ in listed if not _is_ip(host)]
    if names:
        raise ValueError(f"an {ADDRESS_LIST_SCHEME} target lists IP addresses, not {names}")
    return listed


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _socket_address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _discovery(host: str) -> dict[str, Any]:
    if _is_ip(host):
        return {"type": "STATIC"}
    # A DNS name may resolve to several replicas (deploy/): each address becomes a host of the
    # cluster, balanced and health-checked on its own (what STRICT_DNS used to be).
    return {
        "cluster_type": {
            "name": "envoy.cluster.dns",
            "typed_config": typed(
                "extensions.clusters.dns.v3",
                "DnsCluster",
                dns_lookup_family="V4_PREFERRED",
                dns_refresh_rate=DNS_REFRESH_RATE,
            ),
        }
    }


def _single_host_discovery(host: str) -> dict[str, Any]:
    # One process, not replicas (the front door, a collector): an address, or one name
    # resolved as it changes.
    if _is_ip(host):
        return {"type": "STATIC"}
    return {"type": "LOGICAL_DNS", "dns_lookup_family": "V4_PREFERRED"}


def single_host_cluster(name: str, host: str, port: int, http2: bool) -> dict[str, Any]:
    """A cluster of one process without health checks (the front door, a trace collector)."""
    protocol: dict[str, Any] = (
        {"http2_protocol_options": {}} if http2 else {"http_protocol_options": {}}
    )
    return {
        "name": name,
        **_single_host_discovery(host),
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": typed(
                "extensions.upstreams.http.v3", "HttpProtocolOptions", explicit_http_config=protocol
            )
        },
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [{"endpoint": {"address": _socket_address(host, port)}}],
                }
            ],
        },
    }


def cluster(upstream: Upstream, target: str, streams_per_connection: int | None) -> dict[str, Any]:
    addresses = endpoints(target)
    http2: dict[str, Any] = {}
    if streams_per_connection is not None:
        http2["max_concurrent_streams"] = streams_per_connection
    return {
        "name": upstream.name,
        **_discovery(addresses[0][0]),
        "connect_timeout": CONNECT_TIMEOUT,
        "lb_policy": "ROUND_ROBIN",
        "circuit_breakers": circuit_breakers(),
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": typed(
                "extensions.upstreams.http.v3",
                "HttpProtocolOptions",
                explicit_http_config={"http2_protocol_options": http2},
            )
        },
        "load_assignment": {
            "cluster_name": upstream.name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": _socket_address(host, port)}}
                        for host, port in addresses
                    ]
                }
            ],
        },
        "health_checks": [
            {
                "timeout": "1s",
                "interval": HEALTH_CHECK_INTERVAL,
                # Without traffic Envoy would check only every 60 s, so a service started after
                # Envoy would look down for up to a minute.
                "no_traffic_interval": HEALTH_CHECK_INTERVAL,
                "unhealthy_threshold": 2,
                "healthy_threshold": 1,
                # The proto service, not the whole server (""): a process hosting several
                # services is healthy for each it hosts, and one that hosts another service (a
                # target pointing at the wrong process) for none. Draining on SIGTERM, a server
                # reports every service NOT_SERVING.
                "grpc_health_check": {"service_name": upstream.proto_service},
            }
        ],
    }
