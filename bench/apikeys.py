"""What API keys cost, and how fast a revocation arrives: one run, side by side.

    python -m bench.apikeys [--seconds 2] [--rounds 3] [--clients 2] [--streams 4]

The read is UsersService.GetUser of one existing user, sent by h2load straight to a users
process over gRPC (HTTP/2), three ways: anonymous, with a key whose answer the users process has
cached, and with a key that misses the cache on every call (a second users process whose cache
TTL is a microsecond, so each call asks the apikeys service). Then the time from RevokeAPIKey
returning to the first refusal of that key by another process: one users process that hears
revocations on Redis pub/sub (when Redis answers at --redis-url), one that waits out the 5 s
cache TTL. Every process shares this machine's cores: compare figures within a run, not as
capacity. h2load cannot read gRPC trailers, so each variant is checked once beforehand with a
real gRPC call that must succeed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import redis
from r3mes.apikeys.v1 import apikeys_pb2, apikeys_pb2_grpc
from r3mes.users.v1 import users_pb2, users_pb2_grpc

from bench.loadgen import GRPC_HEADERS, grpc_frame
from gateway.paths import ROOT
from runner.local_stack import LOOPBACK, LocalStack, grpc_serving, running_stack
from services.core.ports import free_port
from services.core.testing import new_wallet_address

RESULTS = Path(__file__).resolve().parent / "results" / "apikeys.json"
GET_USER = "/r3mes.users.v1.UsersService/GetUser"
REVOCATION_ROUNDS = 3
REFUSAL_POLL_SECONDS = 0.01
UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def h2load(
    target: str, body: Path, headers: Mapping[str, str], seconds: float, clients: int, streams: int
) -> dict[str, Any]:
    command = [
        "h2load",
        *("-D", f"{seconds:g}", "--warm-up-time", "1"),
        *("-c", str(clients), "-m", str(streams), "-d", str(body)),
        *(arg for header in GRPC_HEADERS for arg in ("-H", header)),
    ]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    finished = subprocess.run(
        [*command, f"http://{target}{GET_USER}"], capture_output=True, text=True, check=False
    )
    output = finished.stdout
    if finished.returncode != 0:
        raise RuntimeError(f"h2load failed:\n{output}\n{finished.stderr}")
    rps = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", output)
    counts = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", output)
    latency = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", output)
    if not (rps and counts and latency):
        raise RuntimeError(f"unexpected h2load output:\n{output}")
    mean = re.fullmatch(r"([\d.]+)(us|ms|s)", latency.group(3))
    assert mean is not None
    return {
        "requests": int(counts.group(1)),
        "succeeded": int(counts.group(2)),
        "rps": float(rps.group(1)),
        "mean_ms": round(float(mean.group(1)) * UNIT_SECONDS[mean.group(2)] * 1000, 3),
    }


@contextmanager
def extra_users(stack: LocalStack, name: str, environment: Mapping[str, str]) -> Iterator[str]:
    """Another users process of the same stack with its own settings; stopped by its pid."""
    port = free_port()
    env = {**stack.environment, "R3MES_USERS_PORT": str(port), **environment}
    env = {k: v for k, v in env.items() if v != ""}  # an empty value unsets the setting
    target = f"{LOOPBACK}:{port}"
    with (stack.work_dir / f"{name}.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.users"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while not grpc_serving(target):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start; see {stack.work_dir / name}.log")
            time.sleep(0.1)
        yield target
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def new_key(apikeys: Any, internal: Any, wallet: str) -> apikeys_pb2.CreateAPIKeyResponse:
    request = apikeys_pb2.CreateAPIKeyRequest(wallet_address=wallet, name="bench")
    created: apikeys_pb2.CreateAPIKeyResponse = await apikeys.CreateAPIKey(
        request, metadata=internal
    )
    return created


async def revocation_seconds(
    apikeys: Any, users: Any, internal: Any, wallet: str, warm_seconds: float
) -> float:
    """RevokeAPIKey returns; how long until `users` first refuses the key."""
    created = await new_key(apikeys, internal, wallet)
    key = (("x-api-key", created.secret),)
    read = users_pb2.GetUserRequest(wallet_address=wallet)
    await users.GetUser(read, metadata=key)
    await asyncio.sleep(warm_seconds)  # subscribed, and the answer cached
    await users.GetUser(read, metadata=key)
    await apikeys.RevokeAPIKey(
        apikeys_pb2.RevokeAPIKeyRequest(wallet_address=wallet, key_id=created.api_key.key_id),
        metadata=internal,
    )
    revoked = time.perf_counter()
    while True:
        try:
            await users.GetUser(read, metadata=key)
        except grpc.aio.AioRpcError as error:
            if error.code() is not grpc.StatusCode.UNAUTHENTICATED:
                raise
            return time.perf_counter() - revoked
        await asyncio.sleep(REFUSAL_POLL_SECONDS)


async def prepare(
    stack: LocalStack, targets: Mapping[str, str], token: str
) -> tuple[str, dict[str, str]]:
    """A user and two keys (one for the cached variant, one for the missing one), each
    variant tried once with a real gRPC call."""
    internal = (("x-r3mes-internal-token", token),)
    wallet = new_wallet_address()
    async with grpc.aio.insecure_channel(stack.grpc_target("apikeys")) as channel:
        apikeys = apikeys_pb2_grpc.APIKeysServiceStub(channel)
        secrets_by_variant = {
            "cached_key": (await new_key(apikeys, internal, wallet)).secret,
            "cache_miss_key": (await new_key(apikeys, internal, wallet)).secret,
        }
    async with grpc.aio.insecure_channel(targets["users"]) as channel:
        await users_pb2_grpc.UsersServiceStub(channel).CreateUser(
            users_pb2.CreateUserRequest(wallet_address=wallet)
        )
    for variant, target in targets.items():
        async with grpc.aio.insecure_channel(target) as channel:
            users = users_pb2_grpc.UsersServiceStub(channel)
            for key in secrets_by_variant.values():
                await users.GetUser(
                    users_pb2.GetUserRequest(wallet_address=wallet),
                    metadata=(("x-api-key", key),),
                    timeout=5,
                )
        print(f"checked {variant}: keys accepted")
    return wallet, secrets_by_variant


async def revocations(
    stack: LocalStack, targets: Mapping[str, str], token: str, wallet: str
) -> dict[str, list[float]]:
    internal = (("x-r3mes-internal-token", token),)
    found: dict[str, list[float]] = {}
    async with grpc.aio.insecure_channel(stack.grpc_target("apikeys")) as channel:
        apikeys = apikeys_pb2_grpc.APIKeysServiceStub(channel)
        for name in ("users", "users_ttl_only"):
            if name not in targets:
                continue
            async with grpc.aio.insecure_channel(targets[name]) as users_channel:
                users = users_pb2_grpc.UsersServiceStub(users_channel)
                found[name] = [
                    round(await revocation_seconds(apikeys, users, internal, wallet, 0.5), 4)
                    for _ in range(REVOCATION_ROUNDS)
                ]
    return found


def combined(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The turns of one variant: requests added up, rates and latencies by their median."""
    return {
        "requests": sum(run["requests"] for run in runs),
        "succeeded": sum(run["succeeded"] for run in runs),
        "rps": round(statistics.median(run["rps"] for run in runs), 1),
        "mean_ms": round(statistics.median(run["mean_ms"] for run in runs), 3),
    }


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measured time per turn")
    parser.add_argument("--rounds", type=int, default=3, help="turns of each variant")
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--streams", type=int, default=4, help="concurrent streams per client")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if shutil.which("h2load") is None:
        raise SystemExit("h2load is needed (Debian package nghttp2-client)")
    token = secrets.token_urlsafe(16)
    with_redis = redis_answers(args.redis_url)
    # The limiter is off: every read comes from one wallet and one address (its cost is
    # bench.ratelimit's to measure).
    environment = {"R3MES_RATELIMIT_BACKEND": "off"}
    if with_redis:
        environment["R3MES_REDIS_URL"] = args.redis_url
        environment["R3MES_APIKEYS_INVALIDATION_CHANNEL"] = f"bench.withdrawn.{uuid.uuid4().hex}"
    with (
        tempfile.TemporaryDirectory(prefix="r3mes-bench-") as work_dir,
        running_stack(
            Path(work_dir),
            internal_token=token,
            with_envoy=False,
            extra_environment=environment,
            topology="split",  # keys checked by RPC: users and apikeys in processes of their own
        ) as stack,
        extra_users(
            stack,
            "users-cache-miss",
            {"R3MES_APIKEYS_CACHE_TTL_SECONDS": "0.000001", "R3MES_REDIS_URL": ""},
        ) as miss_target,
        extra_users(stack, "users-ttl-only", {"R3MES_REDIS_URL": ""}) as ttl_target,
    ):
        targets = {
            "users": stack.grpc_target("users"),
            "users_cache_miss": miss_target,
            "users_ttl_only": ttl_target,
        }
        wallet, keys = asyncio.run(prepare(stack, targets, token))
        body = Path(work_dir) / "get_user.bin"
        body.write_bytes(grpc_frame(users_pb2.GetUserRequest(wallet_address=wallet)))
        variants = {
            "anonymous": (targets["users"], {}),
            "cached_key": (targets["users"], {"x-api-key": keys["cached_key"]}),
            "cache_miss_key": (targets["users_cache_miss"], {"x-api-key": keys["cache_miss_key"]}),
        }
        # Variants take turns, round after round, so a change in the machine's load (its
        # cores are shared) falls on all of them alike.
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, (target, headers) in variants.items():
                rounds[name].append(
                    h2load(target, body, headers, args.seconds, args.clients, args.streams)
                )
        results = {name: combined(runs) for name, runs in rounds.items()}
        revoked = asyncio.run(revocations(stack, targets, token, wallet))
    figures = report(results, revoked, args, with_redis)
    print(json.dumps(figures, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written to {args.out}")


def report(
    results: dict[str, dict[str, Any]],
    revoked: dict[str, list[float]],
    args: argparse.Namespace,
    with_redis: bool,
) -> dict[str, Any]:
    anonymous = results["anonymous"]

    def overhead(name: str) -> float:
        return round(float(results[name]["mean_ms"]) / float(anonymous["mean_ms"]) - 1, 3)

    return {
        "benchmark": "apikeys",
        "call": "UsersService.GetUser of one existing user, gRPC straight to users (h2load)",
        "clients": args.clients,
        "streams_per_client": args.streams,
        "seconds_per_turn": args.seconds,
        "rounds": args.rounds,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "results": results,
        "ratios": {
            "cached_key_mean_latency_over_anonymous_minus_1": overhead("cached_key"),
            "cache_miss_key_mean_latency_over_anonymous_minus_1": overhead("cache_miss_key"),
            "cached_key_rps_over_anonymous": round(
                results["cached_key"]["rps"] / anonymous["rps"], 3
            ),
        },
        "revocation_to_first_refusal_seconds": {
            "via_redis_pubsub" if with_redis else "redis_not_reachable": revoked.get("users", []),
            "by_cache_ttl_5s": revoked.get("users_ttl_only", []),
        },
        "revocation_worst_seconds": {
            name: max(values) for name, values in revoked.items() if values
        },
        "revocation_median_seconds": {
            name: statistics.median(values) for name, values in revoked.items() if values
        },
    }


if __name__ == "__main__":
    main()
