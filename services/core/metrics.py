"""Prometheus metrics of one process (prometheus-client), served at /metrics on its own port.

The gRPC server and client series carry go-grpc-prometheus's names and labels
(`grpc_server_started_total`, `grpc_server_handled_total`, `grpc_server_handling_seconds`,
`grpc_client_handled_total`; `grpc_type`, `grpc_service`, `grpc_method`, `grpc_code`), so the
dashboards and alerts written for any gRPC server read ours as they are. Everything else is
`r3mes_*`. The kernel records what it owns (the request chain, the pools, units of work, the
rate limiter, calls to peers, background jobs); a service registers its own
series beside its code (services/<name>/metrics.py).

Every RPC pays for the chain's series, so each method's series are resolved once
(`CallMetrics`, built with the method's wrapped handler): a call costs two counter increments
and one histogram observation, no label lookup (bench/metrics.py measures it).

Values read off live objects (pool checkouts, calls in flight, the limiter's state) are
collected when scraped, not kept up to date per call: `LiveGauge`.

With R3MES_WORKERS above 1 each worker serves its own metrics port (`R3MES_METRICS_PORT` plus
its index) rather than prometheus-client's multiprocess mode: that mode writes every increment
to a memory-mapped file and cannot read live values at scrape time, and a worker per target
shows a dead worker as a target down. Sum over `instance` in queries.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from typing import Any, Generic, TypeVar
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.core.settings import Settings
from services.core.workers import WORKER_ENV

logger = logging.getLogger(__name__)

# The `_created` twin of every counter doubles a scrape and no rule here reads it.
disable_created_metrics()  # type: ignore[no-untyped-call]

GRPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")
# Go's spelling of the one code whose words are not Python's (CANCELLED).
_GO_SPELLING = {"OK": "OK", "CANCELLED": "Canceled"}
UNARY = "unary"

SERVER_STARTED = Counter("grpc_server_started_total", "RPCs started on the server.", GRPC_LABELS)
SERVER_HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, whatever their status.",
    (*GRPC_LABELS, "grpc_code"),
)
SERVER_HANDLING_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time from the call's start in the chain to its status, handler included.",
    GRPC_LABELS,
)
CLIENT_HANDLED = Counter(
    "grpc_client_handled_total",
    "Calls to peer services completed, by status (in-process peers included).",
    (*GRPC_LABELS, "grpc_code"),
)
UNIT_OF_WORK_RETRIES = Counter(
    "r3mes_db_unit_of_work_retries_total",
    "Units of work run again after a conflict or a lost connection.",
    ("service",),
)
DB_POOL_TIMEOUTS = Counter(
    "r3mes_db_pool_timeouts_total",
    "Units of work that found no pooled connection in time (the call was UNAVAILABLE).",
    ("service",),
)
RATELIMIT_DECISIONS = Counter(
    "r3mes_ratelimit_decisions_total",
    "Rate-limit decisions: allowed, limited, unchecked (admitted while the limiter fails "
    "open) or undecided (refused: no decision).",
    ("policy", "result"),
)
JOB_LAST_SUCCESS = Gauge(
    "r3mes_background_job_last_success_timestamp_seconds",
    "When the job last succeeded (its start until it has).",
    ("service", "job_name"),
)
JOB_FAILURES = Counter(
    "r3mes_background_job_failures_total", "Failed runs of the job.", ("service", "job_name")
)
JOB_HEALTHY = Gauge(
    "r3mes_background_job_healthy",
    "1 while the job's last run succeeded (its health status), else 0.",
    ("service", "job_name"),
)
JOB_INTERVAL = Gauge(
    "r3mes_background_job_interval_seconds", "The job's schedule.", ("service", "job_name")
)

OwnerT = TypeVar("OwnerT")


class LiveGauge(Collector, Generic[OwnerT]):
    """A gauge read at scrape time off the objects alive now, summed per label values: a
    process may hold several (the tests build many servers in one process), and one that is
    garbage-collected leaves on its own. `read` gets the owner, so no reference keeps it."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = list(labelnames)
        self._owners: weakref.WeakKeyDictionary[
            Any, tuple[tuple[str, ...], Callable[[Any], float]]
        ] = weakref.WeakKeyDictionary()
        REGISTRY.register(self)

    def track(self, owner: OwnerT, read: Callable[[OwnerT], float], *labels: str) -> None:
        self._owners[owner] = (labels, read)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self._name, self._documentation, labels=self._labelnames)
        sums: dict[tuple[str, ...], float] = {}
        for owner, (labels, read) in list(self._owners.items()):
            sums[labels] = sums.get(labels, 0.0) + read(owner)
        for labels, value in sums.items():
            family.add_metric(list(labels), value)
        yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(self._name, self._documentation, labels=self._labelnames)


CALLS_IN_FLIGHT: LiveGauge[Any] = LiveGauge(
    "r3mes_grpc_server_calls_in_flight",
    "Unary calls running now (admitted, status not yet sent).",
)
DB_POOL_IN_USE: LiveGauge[Any] = LiveGauge(
    "r3mes_db_pool_connections_in_use", "Pooled connections checked out now.", ("service",)
)
DB_POOL_WAITING: LiveGauge[Any] = LiveGauge(
    "r3mes_db_pool_waiting", "Units of work waiting for a pooled connection now.", ("service",)
)
RATELIMIT_AVAILABLE: LiveGauge[Any] = LiveGauge(
    "r3mes_ratelimit_limiter_available", "1 while the rate limiter can decide, else 0."
)
RATELIMIT_FAILING_OPEN: LiveGauge[Any] = LiveGauge(
    "r3mes_ratelimit_failing_open",
    "1 while the limiter cannot decide and calls are admitted unchecked (failure policy open).",
)


class CallMetrics:
    """The server series of one method, resolved once; `handled` adds the call's status."""

    __slots__ = ("_handled", "_labels", "_seconds", "_started")

    def __init__(self, method_name: str, grpc_type: str) -> None:
        service, _, method = method_name.lstrip("/").partition("/")
        self._labels = (grpc_type, service, method)
        self._started = SERVER_STARTED.labels(*self._labels)
        self._seconds = SERVER_HANDLING_SECONDS.labels(*self._labels)
        self._handled: dict[str, Any] = {}

    def started(self) -> None:
        self._started.inc()

    def handled(self, code: str, seconds: float) -> None:
        """`code`: the name of a grpc.StatusCode."""
        counter = self._handled.get(code)
        if counter is None:
            counter = self._handled[code] = SERVER_HANDLED.labels(*self._labels, go_code(code))
        counter.inc()
        self._seconds.observe(seconds)


def go_code(name: str) -> str:
    """grpc_code as Go spells the codes (go-grpc-prometheus), so that queries and alerts made
    for any gRPC server read ours: `DEADLINE_EXCEEDED` is `DeadlineExceeded`."""
    return _GO_SPELLING.get(name) or "".join(word.title() for word in name.split("_"))


@lru_cache(maxsize=1024)
def _client_handled(method_name: str, code: str) -> Any:
    service, _, method = method_name.lstrip("/").partition("/")
    return CLIENT_HANDLED.labels(UNARY, service, method, go_code(code))


def peer_call_handled(method_name: str, code: str) -> None:
    """A call to a peer (`/package.Service/Method`) ended with `code` (a grpc.StatusCode's
    name)."""
    _client_handled(method_name, code).inc()


@lru_cache(maxsize=256)
def _decision(policy: str, result: str) -> Any:
    return RATELIMIT_DECISIONS.labels(policy, result)


def ratelimit_decided(policy: str, result: str) -> None:
    _decision(policy, result).inc()


def metrics_port(settings: Settings) -> int | None:
    """This process's metrics port: the setting, plus the worker's index among R3MES_WORKERS
    (port 0, any free port, stays 0); None when metrics are off."""
    if settings.metrics_port is None:
        return None
    if settings.metrics_port == 0:
        return 0
    return settings.metrics_port + int(os.environ.get(WORKER_ENV, "0"))


def serve_metrics(settings: Settings) -> WSGIServer | None:
    """Serve /metrics (prometheus-client's own HTTP server, on a thread) when metrics are on."""
    return serve_metrics_on(
        settings.listen_host,
        metrics_port(settings),
        "R3MES_METRICS_PORT",
        " (each worker takes the next one)",
    )


def serve_metrics_on(
    host: str, port: int | None, setting: str, note: str = ""
) -> WSGIServer | None:
    """Serve /metrics on `host`:`port` (None: not at all); `setting` (and `note`) say what sets
    the port, for the refusal when it is taken."""
    if port is None:
        return None
    try:
        server, _thread = start_http_server(port, addr=host)
    except OSError as error:
        raise RuntimeError(
            f"cannot serve metrics on {host}:{port} ({error.strerror}): set {setting} to a "
            f"free port{note}, or unset it"
        ) from None
    logger.info("metrics", extra={"port": server.server_port, "path": "/metrics"})
    return server
