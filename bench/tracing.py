"""What tracing costs the interceptor chain: CPU per call of the no-op RPC on our server stack
(bench/noop_server.py) with tracing off and on, load from h2load.

    python -m bench.tracing [--calls 3000] [--rounds 5] [--connections 4] [--streams 4]

Two no-op servers run side by side: one with R3MES_OTLP_ENDPOINT unset (the default), one
exporting to an OTLP receiver in this process (services.core.trace_collector). Each is loaded
without a `traceparent` and with one, as Envoy sends it, so five paths: off; off with a
traceparent (read, logged and made current, no span); on (a root span per call, sampled at
100 %); on with a sampled traceparent (a child span per call); on with a traceparent flagged
not sampled (what the calls a lower sampling share leaves out pay: the sampler's decision, no
span recorded). Paths take turns, round after round in a rotating order, each round a fixed
count of calls. The CPU time (user + system, /proc) the server process used from the start of
a round until the receiver has every span of it (so the exporter thread's work is counted in
the round that caused it) is divided by the calls. Printed: the median µs of CPU per call of
each path, the ratios to off, and the spans the receiver got (one per call of the traced paths
and of the traced server's warm-up).

Then the chain alone, as bench.metrics times it (its wrapped no-op handler called in a loop with
a stand-in call context, in this process): the CPU time of the calling thread per call, off and
on, with and without a traceparent. The exporter's thread is not counted there: that figure is
what tracing adds to the call itself, before the export.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from bench.checks import NOOP_REQUEST, READY_TIMEOUT_SECONDS, noop_answers, noop_url
from bench.loadgen import Load, h2load_grpc
from bench.metrics import CallContext, Handler, wrapped_noop
from bench.processes import cpu_now, spawned, wait_until
from bench.results import RESULTS_DIR, machine, write_results
from runner.local_stack import LOOPBACK, grpc_serving
from services.core import tracing
from services.core.ports import free_port
from services.core.settings import Settings
from services.core.trace_collector import CollectedSpan, TraceCollector, running_collector

RESULTS = RESULTS_DIR / "tracing.json"
# A parent as Envoy sends it, sampled or not: the ids are the W3C specification's example.
TRACEPARENT = "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
NOT_SAMPLED = TRACEPARENT.removesuffix("01") + "00"
PATHS = {  # path -> (server, extra headers, a span per call)
    "off": ("off", (), False),
    "off_traceparent": ("off", (TRACEPARENT,), False),
    "on": ("on", (), True),
    "on_traceparent": ("on", (TRACEPARENT,), True),
    "on_not_sampled": ("on", (NOT_SAMPLED,), False),
}
EXPORT_WAIT_SECONDS = 15.0


@contextmanager
def noop_server(name: str, work: Path, environment: Mapping[str, str]) -> Iterator[tuple[str, int]]:
    port = free_port()
    settings = {
        "R3MES_LISTEN_HOST": LOOPBACK,
        "R3MES_USERS_PORT": str(port),
        "R3MES_DATA_DIR": str(work / name),
        "R3MES_RATELIMIT_BACKEND": "off",
        **environment,
    }
    command = [sys.executable, "-m", "bench.noop_server"]
    with spawned(f"noop-{name}", command, settings, work) as (process, log):
        target = f"{LOOPBACK}:{port}"
        wait_until(partial(grpc_serving, target), process, log, READY_TIMEOUT_SECONDS)
        noop_answers(target)
        yield target, process.pid


def measure(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    load = Load(connections=args.connections, streams_per_connection=args.streams)
    cpu_per_call: dict[str, list[float]] = {path: [] for path in PATHS}
    errors = dict.fromkeys(PATHS, 0)
    with ExitStack() as running:
        collector = running.enter_context(running_collector())
        servers = {
            name: running.enter_context(noop_server(name, work, environment))
            for name, environment in (
                ("off", {}),
                ("on", {"R3MES_OTLP_ENDPOINT": collector.endpoint}),
            )
        }
        for target, _ in servers.values():  # warm-up, unmeasured
            h2load_grpc(noop_url(target), NOOP_REQUEST, load, 0, count=args.calls // 3)
        traced = args.calls // 3 + 1  # the warm-up, and the check before it (noop_answers)
        names = list(PATHS)
        for turn in range(args.rounds):
            shift = turn % len(names)
            for path in (*names[shift:], *names[:shift]):
                server, headers, spanned = PATHS[path]
                target, pid = servers[server]
                # Every span sent before the load, and every span of the load sent before the
                # CPU is read: the exporter's work lands in the round that caused it.
                collector.wait_for(partial(_at_least, traced), EXPORT_WAIT_SECONDS)
                before = cpu_now({server: pid})[server]
                result = h2load_grpc(
                    noop_url(target),
                    NOOP_REQUEST,
                    load,
                    0,
                    count=args.calls,
                    extra_headers=headers,
                )
                traced += result.requests if spanned else 0
                collector.wait_for(partial(_at_least, traced), EXPORT_WAIT_SECONDS)
                used = cpu_now({server: pid})[server] - before
                cpu_per_call[path].append(used / max(1, result.requests) * 1e6)
                errors[path] += result.errors
        spans = collector.spans()
        chain = asyncio.run(chain_alone(collector, args.calls, args.rounds))
    medians = {path: round(statistics.median(values), 1) for path, values in cpu_per_call.items()}
    return {
        "benchmark": "tracing",
        "call": "the no-op RPC on our server stack (bench/noop_server.py), over gRPC",
        "load": f"h2load, {args.connections} connections x {args.streams} streams",
        "calls_per_round": args.calls,
        "rounds": args.rounds,
        "machine": machine(),
        "cpu_us_per_call": medians,
        "cpu_us_per_call_rounds": {p: [round(v, 1) for v in vs] for p, vs in cpu_per_call.items()},
        "errors": errors,
        "spans_received": len(spans),
        "spans_expected": traced,
        "ratios": {
            f"{path}_over_off": round(medians[path] / medians["off"], 3)
            for path in PATHS
            if path != "off"
        },
        "chain_alone_us_per_call": chain,
    }


class TracedCallContext(CallContext):
    """The stand-in call context of bench.metrics, with the header Envoy adds."""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        name, _, value = TRACEPARENT.partition(": ")
        return (*super().invocation_metadata(), (name, value))


async def chain_alone(collector: TraceCollector, calls: int, rounds: int) -> dict[str, float]:
    """The chain's own CPU per call (this thread's), tracing off and on, in turns."""
    handler = await wrapped_noop(False)
    tracing.configure_tracing(Settings(_env_file=None, otlp_endpoint=collector.endpoint), "bench")
    # Configured once per process, so switched per variant here.
    on = tracing._state.tracer
    variants = {
        "off": (None, CallContext()),
        "off_traceparent": (None, TracedCallContext()),
        "on": (on, CallContext()),
        "on_traceparent": (on, TracedCallContext()),
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for turn in range(rounds + 1):  # the first round warms up
        for name, (tracer, context) in variants.items():
            tracing._state.tracer = tracer
            sent = len(collector.spans()) + (calls if tracer is not None else 0)
            # A task of its own per variant, as grpc runs each call: what a variant's calls make
            # current stays out of the others'.
            per_call = await asyncio.create_task(_thread_seconds_per_call(handler, context, calls))
            # The exporter's queue empties before the next round, so none is dropped.
            collector.wait_for(partial(_at_least, sent), EXPORT_WAIT_SECONDS)
            if turn:
                samples[name].append(per_call)
    # Sent before the receiver stops, not at exit.
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()
    return {name: round(statistics.median(v) * 1e6, 2) for name, v in samples.items()}


async def _thread_seconds_per_call(handler: Handler, context: CallContext, calls: int) -> float:
    request = NOOP_REQUEST
    started = time.thread_time()
    for _ in range(calls):
        await handler(request, context)
    return (time.thread_time() - started) / calls


def _at_least(count: int, spans: Sequence[CollectedSpan]) -> bool:
    return len(spans) >= count


def print_report(figures: dict[str, Any]) -> None:
    print(f"{figures['call']}; {figures['load']}, {figures['rounds']} rounds")
    print(f"{'path':<18}{'CPU us/call':>12}{'errors':>8}")
    for path, value in figures["cpu_us_per_call"].items():
        print(f"{path:<18}{value:>12.1f}{figures['errors'][path]:>8}")
    for name, value in figures["ratios"].items():
        print(f"{name}: {value}")
    print(f"spans received: {figures['spans_received']} of {figures['spans_expected']}")
    chain = figures["chain_alone_us_per_call"]
    print("the chain alone, CPU us per call of the calling thread (exporter not counted):")
    for name, value in chain.items():
        print(f"  {name:<16}{value:>8.2f}  ({value / chain['off']:.2f} x off)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000, help="calls per path and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=4, help="h2load's connections")
    parser.add_argument("--streams", type=int, default=4, help="h2load's streams per connection")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="r3mes-bench-tracing-") as work:
        figures = measure(Path(work), args)
    print_report(figures)
    write_results(figures, args.out)


if __name__ == "__main__":
    main()
