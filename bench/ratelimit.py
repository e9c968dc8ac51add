"""The rate limiter's cost: the cheapest read with the limiter off, in-process and on Redis,
side by side in one run, load from h2load.

    python -m bench.ratelimit [--requests 3000] [--rounds 10] [--clients 4] [--streams 8]

The read is UsersService.GetNetworkStats over gRPC straight to the users service (no gateway:
its cost would hide the limiter's), under a policy too large to ever refuse, so that every call
pays a whole decision. For each configuration the four services run as processes of their own;
h2load sends the calls (gRPC is HTTP/2 with a 5-byte frame header before the message).

Printed per configuration: requests per second from h2load; the p50 of one decision, timed
around the limiter itself in this process (h2load reports no percentiles); and for Redis the
round trips per decision, from `INFO commandstats` of this benchmark's own redis-server. Goals:
exactly one round trip per decision, and at most 10 % fewer requests per second in-process
than with the limiter off. The services, h2load and Redis share this machine's cores: the
figures compare within one run, they are not capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis.asyncio

from gateway.local_stack import running_stack
from services.core.ratelimit import InProcessLimiter, Limiter, Rate, RedisLimiter
from services.core.testing import RedisServer, own_redis_server

RESULTS = Path(__file__).resolve().parent / "results" / "ratelimit.json"
METHOD = "/r3mes.users.v1.UsersService/GetNetworkStats"
EMPTY_MESSAGE_FRAME = b"\x00\x00\x00\x00\x00"  # not compressed, length 0
# Large enough that no call of the run is refused: every call pays the whole decision.
POLICIES = """
policies:
  read: 1000000000/hour
default: read
methods:
  r3mes.users.v1.UsersService.GetNetworkStats: read
"""
DECISIONS_TIMED = 5000
CONFIGURATIONS = ("off", "memory", "redis")


def h2load(target: str, body: Path, length: str, clients: int, streams: int) -> dict[str, Any]:
    """`length`: `--duration=<seconds>` or `--requests=<count>`."""
    executable = shutil.which("h2load")
    if executable is None:
        raise SystemExit("h2load is missing: apt-get install -y nghttp2-client")
    command = [
        executable,
        length,
        f"--clients={clients}",
        f"--max-concurrent-streams={streams}",
        f"--data={body}",
        "--header=content-type: application/grpc",
        "--header=te: trailers",
        f"http://{target}{METHOD}",
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    requests = re.search(r"requests: \d+ total, (\d+) started, (\d+) done, (\d+) succeeded", output)
    rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", output)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\s", output)
    if requests is None or rps is None or mean is None:
        raise RuntimeError(f"unexpected h2load output:\n{output}")
    return {
        "started": int(requests[1]),
        "requests": int(requests[2]),
        "succeeded": int(requests[3]),
        "rps": float(rps[1]),
        "mean_call_ms": float(mean[1]) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[mean[2]],
    }


async def decision_p50_us(limiter: Limiter) -> float:
    """The median time of one decision (in this process; for Redis, one round trip)."""
    rate = Rate(1_000_000_000, 3600.0)
    durations = []
    for i in range(DECISIONS_TIMED):
        started = time.perf_counter()
        await limiter.decide("bench", rate, [f"wallet:w{i % 64}", "ip:127.0.0.1"])
        durations.append(time.perf_counter() - started)
    await limiter.close()
    durations.sort()
    return durations[len(durations) // 2] * 1e6


async def command_calls(server: RedisServer) -> dict[str, int]:
    client = redis.asyncio.from_url(server.url)
    stats = await client.info("commandstats")
    await client.aclose()
    return {name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()}


def environment_of(name: str, policies: Path, server: RedisServer) -> dict[str, str]:
    return {
        "R3MES_RATELIMIT_BACKEND": name,
        "R3MES_RATELIMIT_POLICIES_FILE": str(policies),
        "R3MES_REDIS_URL": server.url,
        "R3MES_LOG_LEVEL": "WARNING",  # no access log line per call: it is not what is measured
    }


def measure(work: Path, server: RedisServer, args: argparse.Namespace) -> dict[str, Any]:
    """The three configurations run at once and are loaded in turns, round after round, so
    that whatever else this shared machine does weighs on each alike."""
    policies, body = work / "policies.yaml", work / "request.bin"
    policies.write_text(POLICIES)
    body.write_bytes(EMPTY_MESSAGE_FRAME)
    rows: dict[str, dict[str, Any]] = {
        name: {"requests": 0, "succeeded": 0, "seconds": 0.0, "call_ms": 0.0}
        for name in CONFIGURATIONS
    }
    scripts = others = 0
    with contextlib.ExitStack() as stacks:
        targets, stacks_by_name = {}, {}
        for name in CONFIGURATIONS:
            (work / name).mkdir()
            stack = stacks.enter_context(
                running_stack(
                    work / name,
                    internal_token=secrets.token_urlsafe(16),
                    with_envoy=False,
                    extra_environment=environment_of(name, policies, server),
                )
            )
            targets[name], stacks_by_name[name] = stack.grpc_target("users"), stack
            h2load(targets[name], body, "--requests=300", args.clients, args.streams)  # warm-up
        per_round = f"--requests={args.requests // args.rounds}"
        for turn in range(args.rounds):
            # Each round in another order: no configuration always follows the same one.
            for name in (
                *CONFIGURATIONS[turn % len(CONFIGURATIONS) :],
                *CONFIGURATIONS[: turn % len(CONFIGURATIONS)],
            ):
                before = asyncio.run(command_calls(server))
                load = h2load(targets[name], body, per_round, args.clients, args.streams)
                after = asyncio.run(command_calls(server))
                row = rows[name]
                row["requests"] += load["requests"]
                row["succeeded"] += load["succeeded"]
                row["seconds"] += load["requests"] / load["rps"]
                row["call_ms"] += load["mean_call_ms"] * load["requests"]
                if name == "redis":
                    ran = sum(after.get(c, 0) - before.get(c, 0) for c in ("evalsha", "eval"))
                    scripts += ran
                    others += sum(after.values()) - sum(before.values()) - ran
        # A decision Redis did not answer in time makes the next calls skip it (admitted
        # unchecked) until the probe reaches it: fewer scripts than calls, and logged here.
        lost = stacks_by_name["redis"].log_of("users").count("rate limiter lost Redis")
    for row in rows.values():
        row["rps"] = round(row["requests"] / row.pop("seconds"), 1)
        row["mean_call_ms"] = round(row.pop("call_ms") / row["requests"], 3)
    rows["redis"]["redis_scripts"] = scripts
    # PINGs of the health probe and the INFO of this benchmark: not decisions.
    rows["redis"]["redis_other_commands"] = others
    rows["redis"]["redis_lost_during_run"] = lost
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="calls per configuration")
    parser.add_argument("--rounds", type=int, default=10, help="turns the calls are split in")
    parser.add_argument("--clients", type=int, default=4, help="h2load connections")
    parser.add_argument("--streams", type=int, default=8, help="concurrent calls per connection")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="r3mes-bench-rl-") as work,
        own_redis_server(Path(work)) as server,
    ):
        results = measure(Path(work), server, args)
        results["memory"]["decision_p50_us"] = asyncio.run(decision_p50_us(InProcessLimiter()))
        client = redis.asyncio.from_url(server.url)
        results["redis"]["decision_p50_us"] = asyncio.run(
            decision_p50_us(RedisLimiter(client, "bench redis"))
        )
    figures = report(results, args)
    print_report(figures)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written to {args.out}")


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    off, memory, redis_row = results["off"], results["memory"], results["redis"]
    return {
        "benchmark": "ratelimit",
        "call": "UsersService.GetNetworkStats over gRPC, straight to the service",
        "load": f"h2load, {args.clients} connections x {args.streams} streams",
        "calls_per_configuration": args.requests,
        "rounds": args.rounds,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "results": results,
        "ratios": {
            "memory_rps_over_off": round(memory["rps"] / off["rps"], 3),
            "redis_rps_over_off": round(redis_row["rps"] / off["rps"], 3),
            # A fixed count of calls, all finished: each reached the limiter once.
            "redis_round_trips_per_call": round(
                redis_row["redis_scripts"] / max(1, redis_row["requests"]), 3
            ),
        },
    }


def print_report(figures: dict[str, Any]) -> None:
    print(f"{figures['call']}; {figures['load']}, {figures['calls_per_configuration']} calls each")
    print(
        f"{'limiter':<10}{'requests':>10}{'ok':>10}{'rps':>10}{'mean ms':>10}"
        f"{'decision p50 us':>18}"
    )
    for name, row in figures["results"].items():
        p50 = row.get("decision_p50_us")
        shown = f"{p50:.1f}" if p50 is not None else "-"
        print(
            f"{name:<10}{row['requests']:>10}{row['succeeded']:>10}{row['rps']:>10.1f}"
            f"{row['mean_call_ms']:>10.1f}{shown:>18}"
        )
    for name, value in figures["ratios"].items():
        print(f"{name}: {value}")
    redis_row = figures["results"]["redis"]
    print(
        f"redis: {redis_row['redis_scripts']} scripts for {redis_row['requests']} calls; "
        f"Redis lost {redis_row['redis_lost_during_run']} times during the run"
    )


if __name__ == "__main__":
    main()
