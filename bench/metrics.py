"""What the metrics cost every RPC: the interceptor chain's CPU time per call with and without
its series (R3MES_METRICS_PORT set or not).

    python -m bench.metrics [--calls 20000] [--rounds 5]

The chain is the one `build_server` assembles (`services.core.lifecycle.request_chain`), its
wrapped handler called directly in a loop with the no-op handler of bench/noop_server.py and
a stand-in for grpc's call context: no network, no grpc core, no access log line (no handler
is configured), so the figure is the chain alone and the ratio an upper bound of what the
series add to a whole call. Variants take turns, round after round; the median per-call time of
each is reported, and the ratio between them. Writes bench/results/metrics.json.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import grpc
from google.protobuf.empty_pb2 import Empty

from bench.noop_server import FULL_METHOD, noop_handler
from bench.results import RESULTS_DIR, machine, write_results
from services.core.auth import InternalTokenAuthenticator
from services.core.interceptors.admission import Admission
from services.core.interceptors.ratelimit import rate_limiting_from_settings
from services.core.lifecycle import request_chain
from services.core.settings import Settings

RESULTS = RESULTS_DIR / "metrics.json"
Handler = Callable[[Any, Any], Awaitable[Any]]


class CallContext:
    """What the chain reads of grpc's call context on a call that succeeds; nothing more.
    Hand-written: grpc offers no context outside a server."""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("user-agent", "bench"), ("x-request-id", "bench-request"))

    def peer(self) -> str:
        return "ipv4:127.0.0.1:40000"

    def set_trailing_metadata(self, _metadata: Any) -> None:
        return None

    def time_remaining(self) -> float | None:
        return None

    def code(self) -> grpc.StatusCode | None:
        return None


class Details(grpc.HandlerCallDetails):
    method = FULL_METHOD
    invocation_metadata = ()


async def wrapped_noop(metrics: bool) -> Handler:
    settings = Settings(_env_file=None, metrics_port=0 if metrics else None)
    chain = request_chain(
        settings,
        "users",
        # build_server's default; API keys are no cost of a call that presents none.
        [InternalTokenAuthenticator(settings.internal_token_value())],
        Admission(),
        rate_limiting_from_settings(settings),
    )
    noop = noop_handler().service(Details())

    async def continuation(_details: grpc.HandlerCallDetails) -> Any:
        return noop

    handler = await chain.intercept_service(continuation, Details())
    assert handler is not None
    assert handler.unary_unary is not None
    return cast(Handler, handler.unary_unary)


async def seconds_per_call(handler: Handler, calls: int) -> float:
    request, context = Empty(), CallContext()
    started = time.process_time()
    for _ in range(calls):
        await handler(request, context)
    return (time.process_time() - started) / calls


async def measure(calls: int, rounds: int) -> dict[str, Any]:
    handlers = {"without": await wrapped_noop(False), "with": await wrapped_noop(True)}
    for handler in handlers.values():  # warm up: the first calls build caches
        await seconds_per_call(handler, 1000)
    samples: dict[str, list[float]] = {name: [] for name in handlers}
    for _ in range(rounds):
        for name, handler in handlers.items():
            samples[name].append(await seconds_per_call(handler, calls))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    return {
        "calls_per_round": calls,
        "rounds": rounds,
        "machine": machine(),
        "chain_us_per_call": {name: round(value * 1e6, 2) for name, value in medians.items()},
        "ratio_with_to_without": round(medians["with"] / medians["without"], 3),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    figures = asyncio.run(measure(args.calls, args.rounds))
    per_call = figures["chain_us_per_call"]
    print(
        f"interceptor chain, CPU per call (median of {args.rounds} rounds of {args.calls}): "
        f"without metrics {per_call['without']:.2f} us, with {per_call['with']:.2f} us, "
        f"ratio {figures['ratio_with_to_without']:.3f}"
    )
    write_results(figures, RESULTS)


if __name__ == "__main__":
    main()
