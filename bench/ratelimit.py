"""The rate limiter's cost: the cheapest read with the limiter off, in-process and on Redis,
side by side in one run, load from h2load.

    python -m bench.ratelimit [--calls 300] [--rounds 10] [--connections 4] [--streams 4]

The read is UsersService.GetNetworkStats over gRPC straight to the users service (no gateway:
its cost would hide the limiter's), under a policy too large to ever refuse, so that every call
pays a whole decision. Each configuration runs as its own four service processes; all three run
at once and are loaded in turns, round after round in a rotating order, so that whatever else
this shared machine does weighs on each alike.

Printed per configuration: requests per second and p50 latency (h2load); the p50 overhead per
call against the limiter off; the median time of one decision, timed around the limiter itself
in this process; and for Redis the round trips per call, from `INFO commandstats` of this
benchmark's own redis-server (each round is a fixed count of calls, so scripts / calls is
exact). Goals: exactly one round trip per call, at most 10 % fewer requests per second
in-process than with the limiter off.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import redis.asyncio
from r3mes.users.v1 import users_pb2

from bench.loadgen import Load, LoadResult, h2load_grpc
from bench.results import RESULTS_DIR, machine, write_results
from runner.local_stack import running_stack
from services.core.ratelimit import InProcessLimiter, Limiter, Rate, RedisLimiter, RedisProbe
from services.core.testing import RedisServer, own_redis_server

RESULTS = RESULTS_DIR / "ratelimit.json"
METHOD = "/r3mes.users.v1.UsersService/GetNetworkStats"
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
SCRIPT_COMMANDS = {"time", "get", "set"}  # what the GCRA script calls


def environment_of(name: str, policies: Path, server: RedisServer) -> dict[str, str]:
    return {
        "R3MES_RATELIMIT_BACKEND": name,
        "R3MES_RATELIMIT_POLICIES_FILE": str(policies),
        "R3MES_REDIS_URL": server.url,
        "R3MES_LOG_LEVEL": "WARNING",  # no access log line per call: it is not what is measured
    }


async def command_calls(server: RedisServer) -> dict[str, int]:
    client = redis.asyncio.from_url(server.url)
    stats = await client.info("commandstats")
    await client.aclose()
    return {name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()}


async def decision_p50_us(limiter: Limiter) -> float:
    """The median time of one decision in this process (for Redis: one round trip)."""
    rate = Rate(1_000_000_000, 3600.0)
    durations = []
    for i in range(DECISIONS_TIMED):
        started = time.perf_counter()
        await limiter.decide("bench", rate, [f"wallet:w{i % 64}", "ip:127.0.0.1"])
        durations.append(time.perf_counter() - started)
    await limiter.close()
    return statistics.median(durations) * 1e6


def measure(work: Path, server: RedisServer, args: argparse.Namespace) -> dict[str, Any]:
    policies = work / "policies.yaml"
    policies.write_text(POLICIES)
    load = Load(connections=args.connections, streams_per_connection=args.streams)
    request = users_pb2.GetNetworkStatsRequest()
    rounds: dict[str, list[LoadResult]] = {name: [] for name in CONFIGURATIONS}
    scripts = others = 0
    with contextlib.ExitStack() as stacks:
        urls, users_logs = {}, {}
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
            urls[name] = f"http://{stack.grpc_target('users')}{METHOD}"
            users_logs[name] = stack
            h2load_grpc(urls[name], request, load, 0, count=300)  # warm-up
        for turn in range(args.rounds):
            shift = turn % len(CONFIGURATIONS)
            for name in (*CONFIGURATIONS[shift:], *CONFIGURATIONS[:shift]):
                before = asyncio.run(command_calls(server))
                rounds[name].append(h2load_grpc(urls[name], request, load, 0, count=args.calls))
                after = asyncio.run(command_calls(server))
                if name == "redis":
                    ran = sum(after.get(c, 0) - before.get(c, 0) for c in ("evalsha", "eval"))
                    scripts += ran
                    # INFO counts the commands the script runs inside Redis too: not trips.
                    others += (
                        sum(after[c] - before.get(c, 0) for c in after if c not in SCRIPT_COMMANDS)
                        - ran
                    )
        # A decision Redis does not answer in time makes the next calls skip it (admitted
        # unchecked) until the probe reaches it again: fewer scripts than calls, and logged.
        lost = users_logs["redis"].log_of("users").count("rate limiter lost Redis")
    rows = {name: summary(results) for name, results in rounds.items()}
    rows["redis"].update(redis_scripts=scripts, redis_other_commands=others, redis_lost=lost)
    return rows


def summary(results: list[LoadResult]) -> dict[str, Any]:
    """Of all rounds: calls, errors, overall requests/s, and the median of the rounds' p50."""
    calls = sum(r.requests for r in results)
    return {
        "requests": calls,
        "errors": sum(r.errors for r in results),
        "rps": round(calls / sum(r.requests / r.rps for r in results), 1),
        "p50_ms": round(statistics.median(r.p50_ms for r in results), 3),
        "rounds_rps": [round(r.rps, 1) for r in results],
    }


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    off, memory, on_redis = results["off"], results["memory"], results["redis"]
    return {
        "benchmark": "ratelimit",
        "call": "UsersService.GetNetworkStats over gRPC, straight to the service",
        "load": f"h2load, {args.connections} connections x {args.streams} streams",
        "calls_per_round": args.calls,
        "rounds": args.rounds,
        "machine": machine(),
        "results": results,
        "ratios": {
            "memory_rps_over_off": round(memory["rps"] / off["rps"], 3),
            "redis_rps_over_off": round(on_redis["rps"] / off["rps"], 3),
            "memory_p50_overhead_ms": round(memory["p50_ms"] - off["p50_ms"], 3),
            "redis_p50_overhead_ms": round(on_redis["p50_ms"] - off["p50_ms"], 3),
            "redis_round_trips_per_call": round(
                on_redis["redis_scripts"] / max(1, on_redis["requests"]), 3
            ),
        },
    }


def print_report(figures: dict[str, Any]) -> None:
    print(f"{figures['call']}; {figures['load']}, {figures['rounds']} rounds")
    print(f"{'limiter':<10}{'calls':>8}{'errors':>8}{'rps':>10}{'p50 ms':>10}{'decision us':>14}")
    for name, row in figures["results"].items():
        decision = row.get("decision_p50_us")
        shown = f"{decision:.1f}" if decision is not None else "-"
        print(
            f"{name:<10}{row['requests']:>8}{row['errors']:>8}{row['rps']:>10.1f}"
            f"{row['p50_ms']:>10.3f}{shown:>14}"
        )
    for name, value in figures["ratios"].items():
        print(f"{name}: {value}")
    on_redis = figures["results"]["redis"]
    print(
        f"redis: {on_redis['redis_scripts']} scripts for {on_redis['requests']} calls, "
        f"{on_redis['redis_other_commands']} other round trips (probe PINGs, new "
        "connections, this INFO); "
        f"Redis lost {on_redis['redis_lost']} times"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per round")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=4, help="h2load's connections")
    parser.add_argument("--streams", type=int, default=4, help="h2load's streams per connection")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="r3mes-bench-rl-") as work,
        own_redis_server(Path(work)) as server,
    ):
        results = measure(Path(work), server, args)
        results["memory"]["decision_p50_us"] = asyncio.run(decision_p50_us(InProcessLimiter()))
        limiter = RedisLimiter(
            redis.asyncio.from_url(server.url), "bench redis", RedisProbe(server.url, 1.0)
        )
        results["redis"]["decision_p50_us"] = asyncio.run(decision_p50_us(limiter))
    figures = report(results, args)
    print_report(figures)
    write_results(figures, args.out)


if __name__ == "__main__":
    main()
