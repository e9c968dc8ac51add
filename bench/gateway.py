"""The gateway's cost: the same GetUser called directly over gRPC and through Envoy, one after
the other in one run, at the same concurrency, against the same running services.

    python -m bench.gateway [--seconds 3] [--connections 2] [--streams 4]

Three paths are measured: gRPC straight to the users service and gRPC through Envoy (the proxy
alone), both loaded by h2load, and REST/JSON through Envoy (proxy plus transcoding plus an
HTTP/1.1 JSON client), loaded by wrk with as many connections as h2load has streams in flight.
The headline ratio is REST through Envoy against direct gRPC. Each path is checked once with a
Python client first. Load generators, services and Envoy share this machine's cores, so the
figures are for comparison within a run, not capacity.
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
from pathlib import Path
from typing import Any

from bench import checks
from bench.loadgen import Load, LoadResult, h2load_grpc, wrk_get
from bench.results import RESULTS_DIR, machine, write_results
from runner.local_stack import LocalStack, running_stack

RESULTS = RESULTS_DIR / "gateway.json"
GET_USER = "/r3mes.users.v1.UsersService/GetUser"
WARM_UP_SECONDS = 1


def run(stack: LocalStack, load: Load, seconds: int) -> dict[str, LoadResult]:
    users = stack.grpc_target("users")
    wallet = checks.create_user(users)
    request = checks.get_user_request(wallet)
    checks.get_user_answers(users, request)
    checks.get_user_answers(stack.gateway_target, request)
    rest_url = f"{stack.rest_url}/v1/users/{wallet}"
    checks.rest_answers(rest_url, wallet)
    paths = {
        "grpc_direct": f"http://{users}{GET_USER}",
        "grpc_via_envoy": f"http://{stack.gateway_target}{GET_USER}",
    }
    results = {}
    for name, url in paths.items():
        h2load_grpc(url, request, load, WARM_UP_SECONDS)
        results[name] = h2load_grpc(url, request, load, seconds)
    wrk_get(rest_url, load, WARM_UP_SECONDS)
    results["rest_via_envoy"] = wrk_get(rest_url, load, seconds)
    return results


def report(results: dict[str, LoadResult], load: Load, seconds: int) -> dict[str, Any]:
    direct, proxied, rest = (
        results["grpc_direct"],
        results["grpc_via_envoy"],
        results["rest_via_envoy"],
    )
    return {
        "benchmark": "gateway",
        "call": "UsersService.GetUser of one existing user",
        "concurrency": load.in_flight,
        "seconds_per_path": seconds,
        "machine": machine(),
        "results": {name: result.summary() for name, result in results.items()},
        "ratios": {
            "rest_via_envoy_rps_over_grpc_direct": round(rest.rps / direct.rps, 3),
            "rest_via_envoy_p50_over_grpc_direct": round(rest.p50_ms / direct.p50_ms, 3),
            "grpc_via_envoy_rps_over_grpc_direct": round(proxied.rps / direct.rps, 3),
        },
    }


def print_report(figures: dict[str, Any]) -> None:
    print(f"GetUser, concurrency {figures['concurrency']}, {figures['seconds_per_path']} s each")
    print(f"{'path':<16}{'requests':>10}{'errors':>8}{'rps':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for name, row in figures["results"].items():
        print(
            f"{name:<16}{row['requests']:>10}{row['errors']:>8}{row['rps']:>10.1f}"
            f"{row['p50_ms']:>10.3f}{row['p99_ms']:>10.3f}"
        )
    for name, value in figures["ratios"].items():
        print(f"{name}: {value}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=3, help="measured time per path")
    parser.add_argument("--connections", type=int, default=2, help="h2load's connections")
    parser.add_argument("--streams", type=int, default=4, help="h2load's streams per connection")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    load = Load(connections=args.connections, streams_per_connection=args.streams)
    with (
        tempfile.TemporaryDirectory(prefix="r3mes-bench-") as work_dir,
        # Limiter off: it would refuse the thousands of reads of one client (bench.ratelimit
        # measures its cost).
        running_stack(
            Path(work_dir),
            internal_token=secrets.token_urlsafe(16),
            extra_environment={"R3MES_RATELIMIT_BACKEND": "off"},
        ) as stack,
    ):
        results = run(stack, load, args.seconds)
    figures = report(results, load, args.seconds)
    print_report(figures)
    write_results(figures, args.out)


if __name__ == "__main__":
    main()
