"""Serving's cost: the same streamed chat asked of the reference node directly and through the
gateway's OpenAI-compatible door (Envoy, the front door, serving with its reservation, capture
and share, then the node), one after the other in one run, 1 and 64 streams at once.

    python -m bench.serving [--tokens 32] [--delay 0.02] [--rounds 3]

For each stream: the time to its first token (request sent to first piece read) and its tokens
per second (pieces after the first over the time they took). Figures are medians over every
stream of the rounds; the aggregate rate is all pieces over the wall time. The client, the node,
the services and Envoy share this machine's cores (and, on a shared machine, other people's
work: the load average is in the results), so compare within a run. Rate limits are off: they
are not what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
from r3mes.credits.v1 import credits_pb2, credits_pb2_grpc
from r3mes.serving.v1 import serving_pb2, serving_pb2_grpc

from bench.results import RESULTS_DIR, machine, write_results
from gateway.frontdoor.chat_service import chat_service
from runner.local_stack import LocalStack, running_stack
from runner.reference import register_node
from runner.run import REFERENCE_NETWORKS
from services.core.auth import INTERNAL_TOKEN_HEADER
from services.core.registry import implementing
from tools.reference_node import DEFAULT_MODEL
from tools.wallet import Wallet, first_api_key

RESULTS = RESULTS_DIR / "serving.json"
INTERNAL_TOKEN = "bench-internal-token"  # noqa: S105 - a throwaway stack's
CONCURRENCY = (1, 64)
PATHS = ("direct", "grpc", "door")
CREDITS = 10**12
STREAM_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class Path_:
    """Where a stream is asked: an OpenAI URL (with headers), or serving's gRPC target."""

    target: str
    headers: dict[str, str]
    grpc: bool = False


@dataclass(frozen=True)
class Stream:
    first_token_ms: float
    tokens: int
    tokens_per_second: float


async def one_stream(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> Stream:
    started = time.perf_counter()
    first = last = 0.0
    tokens = 0
    async with client.stream("POST", url, json=body) as reply:
        if reply.status_code != 200:
            raise RuntimeError(f"{url}: {reply.status_code} {(await reply.aread()).decode()}")
        async for line in reply.aiter_lines():
            # Only pieces carry a content (node and door alike); not parsing the JSON keeps the
            # client, which shares the cores, out of what is measured as far as it can be.
            if line.startswith("data: {") and '"content"' in line:
                last = time.perf_counter()
                first = first or last
                tokens += 1
    if tokens < 2:
        raise RuntimeError(f"{url} answered {tokens} tokens")
    return Stream((first - started) * 1000, tokens, (tokens - 1) / (last - first))


async def one_grpc_stream(
    stub: serving_pb2_grpc.ServingServiceAsyncStub, key: str, body: dict[str, Any]
) -> Stream:
    request = serving_pb2.StreamChatCompletionRequest(
        model=body["model"],
        messages=[serving_pb2.ChatMessage(**m) for m in body["messages"]],
        max_tokens=body["max_tokens"],
    )
    started = time.perf_counter()
    first = last = 0.0
    tokens = 0
    async for chunk in stub.StreamChatCompletion(request, metadata=(("x-api-key", key),)):
        if chunk.delta:
            last = time.perf_counter()
            first = first or last
            tokens += 1
    return Stream((first - started) * 1000, tokens, (tokens - 1) / (last - first))


async def measure(
    path: Path_, key: str, body: dict[str, Any], concurrency: int, rounds: int
) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with (
        httpx.AsyncClient(
            headers=path.headers, limits=limits, timeout=STREAM_TIMEOUT_SECONDS
        ) as client,
        grpc.aio.insecure_channel(path.target) as channel,
    ):
        stub = serving_pb2_grpc.ServingServiceStub(channel)

        def stream() -> Coroutine[Any, Any, Stream]:
            if path.grpc:
                return one_grpc_stream(stub, key, body)
            return one_stream(client, path.target, body)

        await stream()  # warm up: connections, caches
        streams: list[Stream] = []
        started = time.perf_counter()
        for _ in range(rounds if concurrency > 1 else rounds * 10):
            streams += await asyncio.gather(*(stream() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    ttft = sorted(s.first_token_ms for s in streams)
    return {
        "streams": len(streams),
        "ttft_p50_ms": round(statistics.median(ttft), 2),
        "ttft_p99_ms": round(ttft[min(len(ttft) - 1, int(len(ttft) * 0.99))], 2),
        "tokens_per_second_p50": round(statistics.median(s.tokens_per_second for s in streams), 1),
        "aggregate_tokens_per_second": round(sum(s.tokens for s in streams) / wall, 1),
    }


def fund_a_key(stack: LocalStack) -> str:
    wallet = Wallet.new()
    with httpx.Client(base_url=stack.rest_url, timeout=10) as client:
        key = first_api_key(client, wallet, "bench")
    credits = implementing(credits_pb2.DESCRIPTOR.services_by_name["CreditsService"].full_name).name
    with grpc.insecure_channel(stack.grpc_target(credits)) as channel:
        credits_pb2_grpc.CreditsServiceStub(channel).GrantCredits(
            credits_pb2.GrantCreditsRequest(
                wallet_address=wallet.address,
                amount_micro_credits=CREDITS,
                idempotency_key="bench-grant",
            ),
            metadata=((INTERNAL_TOKEN_HEADER, INTERNAL_TOKEN),),
            timeout=5,
        )
    return key


def run(tokens: int, delay: float, rounds: int) -> dict[str, Any]:
    environment = {
        "R3MES_SERVING_PRIVATE_NETWORKS": json.dumps(REFERENCE_NETWORKS),
        "R3MES_RATELIMIT_BACKEND": "off",
        "R3MES_LOG_LEVEL": "WARNING",
        # Registered once, never beating: fresh for the whole run.
        "R3MES_SERVING_NODE_OFFLINE_AFTER_SECONDS": "3600",
    }
    with (
        tempfile.TemporaryDirectory(prefix="bench-serving-") as work,
        running_stack(
            Path(work), internal_token=INTERNAL_TOKEN, extra_environment=environment
        ) as stack,
    ):
        node = stack.start_reference_node("--tokens", str(tokens), "--delay", str(delay))
        serving = chat_service().name
        register_node(stack.grpc_target(serving), INTERNAL_TOKEN, node)
        key = fund_a_key(stack)
        body = {
            "model": DEFAULT_MODEL,
            "messages": [{"role": "user", "content": "hello"}],
            "max_tokens": tokens,
            "stream": True,
        }
        paths = {
            "direct": Path_(f"{node}/chat/completions", {}),
            # Serving's own gRPC port: the chat's price, reservation and capture without the
            # gateway, so the door's share of the difference shows.
            "grpc": Path_(stack.grpc_target(serving), {}, grpc=True),
            "door": Path_(
                f"{stack.rest_url}/v1/chat/completions", {"authorization": f"Bearer {key}"}
            ),
        }
        results: dict[str, Any] = {}
        for concurrency in CONCURRENCY:
            for name, path in paths.items():
                measured = asyncio.run(measure(path, key, body, concurrency, rounds))
                results[f"{name}_{concurrency}"] = measured
    return results


def report(results: dict[str, Any], tokens: int, delay: float) -> dict[str, Any]:
    ratios = {}
    for concurrency in CONCURRENCY:
        direct, door = results[f"direct_{concurrency}"], results[f"door_{concurrency}"]
        ratios[f"added_ttft_p50_ms_{concurrency}"] = round(
            door["ttft_p50_ms"] - direct["ttft_p50_ms"], 2
        )
        ratios[f"token_rate_door_over_direct_{concurrency}"] = round(
            door["aggregate_tokens_per_second"] / direct["aggregate_tokens_per_second"], 3
        )
    return {
        "benchmark": "serving",
        "call": f"a streamed chat of {tokens} tokens, one every {delay} s, from the reference node",
        "machine": machine(),
        "results": results,
        "ratios": ratios,
    }


def print_report(figures: dict[str, Any]) -> None:
    print(figures["call"])
    header = (
        f"{'path':<10}{'streams':>9}{'TTFT p50':>10}{'p99 ms':>9}{'tok/s p50':>11}{'tok/s all':>11}"
    )
    for concurrency in CONCURRENCY:
        print(f"\n{concurrency} at once\n{header}")
        for name in PATHS:
            row = figures["results"][f"{name}_{concurrency}"]
            print(
                f"{name:<10}{row['streams']:>9}{row['ttft_p50_ms']:>10.2f}{row['ttft_p99_ms']:>9.2f}"
                f"{row['tokens_per_second_p50']:>11.1f}{row['aggregate_tokens_per_second']:>11.1f}"
            )
        ratios = figures["ratios"]
        print(
            f"door adds {ratios[f'added_ttft_p50_ms_{concurrency}']} ms to the p50 TTFT and keeps "
            f"{ratios[f'token_rate_door_over_direct_{concurrency}']:.1%} of the direct token rate"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--delay", type=float, default=0.02)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    figures = report(
        run(arguments.tokens, arguments.delay, arguments.rounds), arguments.tokens, arguments.delay
    )
    print_report(figures)
    write_results(figures, RESULTS)


if __name__ == "__main__":
    main()
