"""The gateway's cost: the same GetUser called directly over gRPC and through Envoy, one after
the other in one run, at the same concurrency, against the same running services.

    python -m bench.gateway [--seconds 3] [--concurrency 8]

Three paths are measured: gRPC straight to the users service, gRPC through Envoy (the proxy
alone), and REST/JSON through Envoy (proxy plus transcoding plus an HTTP/1.1 JSON client). The
headline ratio is REST through Envoy against direct gRPC. Clients, services and Envoy share this
machine's cores, so the figures are for comparison within a run, not capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import tempfile
from pathlib import Path
from typing import Any

import grpc
import httpx
from r3mes.users.v1 import users_pb2, users_pb2_grpc

from bench.load import Call, Measurement, closed_loop
from gateway.local_stack import LocalStack, running_stack
from services.core.testing import new_wallet_address

RESULTS = Path(__file__).resolve().parent / "results" / "gateway.json"
WARM_UP_SECONDS = 0.5


def grpc_get_user(stub: users_pb2_grpc.UsersServiceAsyncStub, wallet: str) -> Call:
    request = users_pb2.GetUserRequest(wallet_address=wallet)

    async def call() -> None:
        await stub.GetUser(request, timeout=5)

    return call


def rest_get_user(client: httpx.AsyncClient, wallet: str) -> Call:
    path = f"/v1/users/{wallet}"

    async def call() -> None:
        reply = await client.get(path)
        reply.raise_for_status()

    return call


async def measure(call: Call, concurrency: int, seconds: float) -> Measurement:
    await closed_loop(call, concurrency, WARM_UP_SECONDS)
    return await closed_loop(call, concurrency, seconds)


async def run(stack: LocalStack, concurrency: int, seconds: float) -> dict[str, Measurement]:
    wallet = new_wallet_address()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with (
        httpx.AsyncClient(base_url=stack.rest_url, limits=limits, timeout=10) as rest,
        grpc.aio.insecure_channel(stack.grpc_target("users")) as direct,
        grpc.aio.insecure_channel(stack.gateway_target) as through_envoy,
    ):
        created = await rest.post("/v1/users", json={"wallet_address": wallet})
        created.raise_for_status()
        calls = {
            "grpc_direct": grpc_get_user(users_pb2_grpc.UsersServiceStub(direct), wallet),
            "grpc_via_envoy": grpc_get_user(users_pb2_grpc.UsersServiceStub(through_envoy), wallet),
            "rest_via_envoy": rest_get_user(rest, wallet),
        }
        return {name: await measure(call, concurrency, seconds) for name, call in calls.items()}


def report(results: dict[str, Measurement], concurrency: int, seconds: float) -> dict[str, Any]:
    direct, proxied, rest = (
        results["grpc_direct"],
        results["grpc_via_envoy"],
        results["rest_via_envoy"],
    )
    return {
        "benchmark": "gateway",
        "call": "UsersService.GetUser of one existing user",
        "concurrency": concurrency,
        "seconds_per_path": seconds,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "results": {name: m.summary() for name, m in results.items()},
        "ratios": {
            "rest_via_envoy_rps_over_grpc_direct": round(rest.rps / direct.rps, 3),
            "rest_via_envoy_p50_over_grpc_direct": round(
                rest.percentile_ms(0.5) / direct.percentile_ms(0.5), 3
            ),
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
    parser.add_argument("--seconds", type=float, default=3.0, help="measured time per path")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
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
        results = asyncio.run(run(stack, args.concurrency, args.seconds))
    figures = report(results, args.concurrency, args.seconds)
    print_report(figures)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
