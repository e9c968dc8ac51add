"""An OTLP/gRPC trace receiver that keeps every span it is sent in memory: for the tests and the
tracing benchmark, which point R3MES_OTLP_ENDPOINT (services and Envoy) at it.

Hand-written on opentelemetry-proto's messages and generated service because no collector is
packaged for this machine (neither PyPI nor Debian has the OpenTelemetry Collector, Jaeger or
Tempo); it speaks the same protocol, so the processes export exactly as to a real one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue


@dataclass(frozen=True)
class CollectedSpan:
    service: str  # the exporting process's resource `service.name`
    name: str
    kind: int  # opentelemetry.proto.trace.v1.Span.SpanKind: 2 server, 3 client
    trace_id: str  # W3C hex, as in traceparent and the log lines
    span_id: str
    parent_span_id: str | None
    attributes: dict[str, Any]


class TraceCollector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self._spans: list[CollectedSpan] = []
        self._lock = threading.Lock()
        self.endpoint = ""

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        received = [
            CollectedSpan(
                service=str(_attributes(resource_spans.resource.attributes)["service.name"]),
                name=span.name,
                kind=span.kind,
                trace_id=span.trace_id.hex(),
                span_id=span.span_id.hex(),
                parent_span_id=span.parent_span_id.hex() or None,
                attributes=_attributes(span.attributes),
            )
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]
        with self._lock:
            self._spans.extend(received)
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[CollectedSpan]:
        with self._lock:
            return list(self._spans)

    def wait_for(
        self, enough: Callable[[Sequence[CollectedSpan]], bool], timeout_seconds: float
    ) -> list[CollectedSpan]:
        """The spans so far once `enough` holds for them (exporters send in batches), or at the
        timeout, whatever arrived."""
        deadline = time.monotonic() + timeout_seconds
        while not enough(spans := self.spans()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return spans


@contextmanager
def running_collector(host: str = "127.0.0.1") -> Iterator[TraceCollector]:
    """A collector on a free port of `host`; `endpoint` is what R3MES_OTLP_ENDPOINT takes."""
    collector = TraceCollector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    # opentelemetry-proto ships its grpc module without type hints.
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
        collector, server
    )
    port = server.add_insecure_port(f"{host}:0")
    server.start()
    collector.endpoint = f"http://{host}:{port}"
    try:
        yield collector
    finally:
        server.stop(grace=None)


def _attributes(pairs: Sequence[KeyValue]) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return None if kind is None else getattr(value, kind)
