"""Canary releases: a second version of one service gets a share of the gateway's calls to it.

Each service with a canary (`R3MES_CANARIES`) gets a second cluster, `<service>-canary`, and a
route ahead of its usual one that matches the same prefix for a share of the calls
(`runtime_fraction`, Envoy's traffic shifting). The share starts at the setting's weight and is
read from Envoy's runtime key `r3mes.canary.<service>` at each request, so changing that key
through admin's `/runtime_modify` moves the next calls and touches no connection and no call in
flight: nothing is drained or dropped (hot restart, the other way to change a config, is off
here). Changed so, it lasts until Envoy restarts; the setting says where it starts again.

    python -m gateway.canary credits 0      # every credits call to the usual version
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from gateway.admin import AdminEndpoint, admin_endpoint, admin_request
from gateway.catalog import UPSTREAMS, Upstream
from gateway.settings import Canary, GatewaySettings

RUNTIME_KEY_PREFIX = "r3mes.canary"
# The bootstrap's runtime: nothing static, and admin's layer on top for /runtime_modify.
LAYERED_RUNTIME: dict[str, Any] = {
    "layers": [
        {"name": "static", "static_layer": {}},
        {"name": "admin", "admin_layer": {}},
    ]
}


def runtime_key(service: str) -> str:
    return f"{RUNTIME_KEY_PREFIX}.{service}"


def canary_upstream(upstream: Upstream) -> Upstream:
    """The canary's cluster: the same proto service (so the same health check), its own name."""
    return Upstream(f"{upstream.name}-canary", upstream.proto_service)


def canaries(settings: GatewaySettings) -> dict[Upstream, Canary]:
    """The services with a canary, checked against the registry: a misspelt name would
    otherwise leave the canary without traffic and nobody told."""
    unknown = sorted(set(settings.canaries) - {u.name for u in UPSTREAMS})
    if unknown:
        raise ValueError(f"R3MES_CANARIES names unknown services: {', '.join(unknown)}")
    return {u: settings.canaries[u.name] for u in UPSTREAMS if u.name in settings.canaries}


def canary_route(
    upstream: Upstream, canary: Canary, route: Mapping[str, Any], extra: Mapping[str, Any]
) -> dict[str, Any]:
    """The route ahead of the service's own: its prefix, for the canary's share of the calls,
    with the same timeout, retries and headers (`route` and `extra`) as the usual route."""
    shifted = canary_upstream(upstream)
    return {
        "name": shifted.name,
        "match": {
            "prefix": upstream.grpc_prefix,
            "runtime_fraction": {
                "default_value": {"numerator": canary.weight, "denominator": "HUNDRED"},
                "runtime_key": runtime_key(upstream.name),
            },
        },
        "route": {**route, "cluster": shifted.name},
        **extra,
    }


def set_weight(endpoint: AdminEndpoint, service: str, weight: int) -> None:
    """Send `weight` percent of `service`'s calls to its canary from the next call on."""
    if not 0 <= weight <= 100:
        raise ValueError(f"a weight is a percentage, 0 to 100, not {weight}")
    query = f"/runtime_modify?{runtime_key(service)}={weight}"
    status, body = admin_request(endpoint, "POST", query)
    if status != 200:
        raise RuntimeError(f"Envoy's admin refused the weight ({status}): {body.strip()}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.canary", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("service", help="a service with a canary in R3MES_CANARIES")
    parser.add_argument("weight", type=int, help="percent of its calls for the canary, 0-100")
    args = parser.parse_args(argv)
    settings = GatewaySettings()
    if args.service not in settings.canaries:
        parser.error(f"R3MES_CANARIES has no canary of {args.service}")
    set_weight(admin_endpoint(settings), args.service, args.weight)
    print(f"{args.service}: {args.weight} % of its gateway calls now go to its canary")


if __name__ == "__main__":
    main()
