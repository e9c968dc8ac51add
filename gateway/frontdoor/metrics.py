"""The front door's own series, served at /metrics on R3MES_FRONTDOOR_METRICS_PORT (when set)
by the same prometheus-client server the service processes use.

A request is timed from its first line read to its answer's last byte written (a streamed
chat's whole stream), not while its connection waits idle for it (Envoy keeps connections
open). Routes are the front door's own paths, and `other` for anything else, so the labels stay
few whatever callers ask for. The chats' tokens and micro-credits are those of each answer
that reached its end through the door (its usage, as the door has it to tell); serving's own series
(`r3mes_serving_*`) count every chat, those whose client left mid-answer included.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram
from r3mes.serving.v1 import serving_pb2

REQUESTS = Counter(
    "r3mes_frontdoor_requests_total",
    "HTTP requests the front door answered, by route and status code (none: the client left "
    "before any status was sent).",
    ["route", "code"],
)
REQUEST_SECONDS = Histogram(
    "r3mes_frontdoor_request_duration_seconds",
    "From a request's first line to its answer's last byte (a streamed chat's whole stream).",
    ["route"],
)
IN_FLIGHT = Gauge("r3mes_frontdoor_requests_in_flight", "HTTP requests being answered now.")
CHAT_TOKENS = Counter(
    "r3mes_frontdoor_chat_tokens_total",
    "Tokens of the chats answered to their end through the OpenAI-compatible door, by kind "
    "(prompt, completion).",
    ["kind"],
)
CHAT_MICRO_CREDITS = Counter(
    "r3mes_frontdoor_chat_micro_credits_charged_total",
    "Micro-credits charged for the chats answered through the OpenAI-compatible door.",
)


def request_started() -> float:
    IN_FLIGHT.inc()
    return time.perf_counter()


def request_ended(route: str, status: int, started: float) -> None:
    IN_FLIGHT.dec()
    REQUESTS.labels(route, str(status) if status else "none").inc()
    REQUEST_SECONDS.labels(route).observe(time.perf_counter() - started)


def chat_charged(usage: serving_pb2.Usage, charge: serving_pb2.Charge) -> None:
    CHAT_TOKENS.labels("prompt").inc(usage.prompt_tokens)
    CHAT_TOKENS.labels("completion").inc(usage.completion_tokens)
    CHAT_MICRO_CREDITS.inc(charge.charged_micro_credits)
