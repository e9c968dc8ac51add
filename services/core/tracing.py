"""Traces: OpenTelemetry spans for every RPC (server and client side) and every unit of work,
with the W3C trace context (`traceparent`) taken from each call and passed on to its peers.

On when `R3MES_OTLP_ENDPOINT` names a collector: `configure_tracing` installs the SDK with an
OTLP/gRPC exporter that sends spans in batches from a thread of its own. Off (the default) no
span is made and nothing is exported; a `traceparent` that arrives (Envoy sends one on every
call) is still made current, so the log lines carry its trace id and the peers get it, at the
cost of parsing one header. A co-hosted peer, called in-process, simply runs in the caller's
context, so its units of work are children of the caller's span.

Spans are made with the OpenTelemetry API by hand in the chain's context step, the outgoing
call interceptor and the unit of work: opentelemetry-instrumentation-grpc would add an
interceptor of its own to every server and channel, a layer the one-interceptor chain exists to
avoid (docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import lru_cache

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from services.core.settings import Settings

TRACEPARENT_HEADER = "traceparent"
Attributes = Mapping[str, AttributeValue]

_propagator = TraceContextTextMapPropagator()
_NO_SPAN = nullcontext()


@dataclass
class _State:
    tracer: Tracer | None = None


# Per process, set once at start: one check of it is all tracing costs a call when it is off.
_state = _State()


def configure_tracing(settings: Settings, service_name: str) -> None:
    """Export this process's spans to `settings.otlp_endpoint`, when set, as `service_name`."""
    if settings.otlp_endpoint is None:
        return
    # Imported only when on: the SDK and the exporter cost a process that exports nothing
    # start-up time and memory.
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: service_name}),
        # A call that arrives with a trace context keeps its sampling decision (Envoy's);
        # the ratio decides only for calls that start a trace here.
        sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_percent / 100)),
    )
    exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint, insecure=True)
    # The provider sends what is still buffered when the process exits (its atexit hook).
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _state.tracer = provider.get_tracer("r3mes")


def begin_server_span(method: str, metadata: Mapping[str, str]) -> Span | None:
    """Make the call's trace context current: its own SERVER span, child of the caller's
    `traceparent`, when tracing is on; else the caller's context alone, when it sent one.

    Never reset: grpc runs each call in a task of its own, whose context dies with it."""
    tracer = _state.tracer
    if tracer is None:
        if TRACEPARENT_HEADER in metadata:
            otel_context.attach(_propagator.extract(metadata))
        return None
    parent = _propagator.extract(metadata)
    span = tracer.start_span(
        method[1:], parent, SpanKind.SERVER, _rpc_attributes(method), record_exception=False
    )
    otel_context.attach(trace.set_span_in_context(span, parent))
    return span


def start_client_span(method: str) -> Span | None:
    """A CLIENT span for an outgoing call, child of the current span (None when off)."""
    tracer = _state.tracer
    if tracer is None:
        return None
    return tracer.start_span(
        method[1:], None, SpanKind.CLIENT, _rpc_attributes(method), record_exception=False
    )


def end_rpc_span(span: Span, code_name: str, code_value: int, failed: bool) -> None:
    span.set_attribute("rpc.grpc.status_code", code_value)
    if failed:
        span.set_status(Status(StatusCode.ERROR, code_name))
    span.end()


def inject(headers: dict[str, str], span: Span | None) -> None:
    """Add the `traceparent` (and `tracestate`) of `span`, or of the current context, if any."""
    context = trace.set_span_in_context(span) if span is not None else None
    _propagator.inject(headers, context)


def internal_span(name: str, attributes: Attributes) -> AbstractContextManager[object]:
    """An INTERNAL span around a block, child of the current span; nothing when off.

    An exception is recorded as an event, not as the span's failure: a unit of work rolled back
    by a domain refusal (NOT_FOUND, say) did its job, and the RPC's span carries the status."""
    tracer = _state.tracer
    if tracer is None:
        return _NO_SPAN
    return tracer.start_as_current_span(name, attributes=attributes, set_status_on_exception=False)


def current_ids() -> tuple[str, str] | None:
    """The current trace id and span id, in the W3C hex forms, for log lines."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}"


@lru_cache(maxsize=1024)
def _rpc_attributes(method: str) -> Attributes:
    service, _, name = method[1:].rpartition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
