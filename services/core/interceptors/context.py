"""Request context, the chain's first step: request id, trace context (the call's span, see
services.core.tracing), client address, deadline, access log.

The context variables are set and never reset: grpc runs every call in a task of its own, and a
task's context is a copy, so what one call sets is gone when its task ends.
"""

from __future__ import annotations

import hmac
import logging
import random
import time
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import grpc
from opentelemetry.trace import Span

from services.core import tracing
from services.core.errors import DeadlineExceeded
from services.core.logging import REQUEST_ID_HEADER, request_id_var
from services.core.network import (
    FORWARDED_FOR_HEADER,
    GATEWAY_SECRET_HEADER,
    IPNetwork,
    client_address,
    client_address_var,
)
from services.core.validators import API_KEY_PREFIX

MAX_REQUEST_ID_LENGTH = 128
INFRASTRUCTURE_PREFIX = "/grpc."
REQUEST_ID_ATTRIBUTE = "r3mes.request_id"
# The codes that say the server failed (OpenTelemetry's gRPC conventions): a refusal of the
# caller's request (INVALID_ARGUMENT, NOT_FOUND, ...) leaves a server span unset, not an error.
SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)

access_log = logging.getLogger("r3mes.access")
# Request ids correlate log lines; they guard nothing, so a fast non-cryptographic source will
# do (uuid4 reads the OS's random device on every call).
_ids = random.Random()  # noqa: S311


class CallRecord:
    """What the access log line of one call says, and its span; `code` is set as the call
    ends."""

    __slots__ = ("client", "code", "logged", "method", "request_id", "span", "started")

    def __init__(
        self, method: str, request_id: str, client: str | None, span: Span | None = None
    ) -> None:
        self.method = method
        self.request_id = request_id
        self.client = client
        self.span = span
        self.started = time.perf_counter()
        self.code: grpc.StatusCode | int = grpc.StatusCode.OK
        self.logged = False

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


class ClientAddresses:
    """Who the client of a call is (services.core.network.client_address), remembered per peer
    and forwarded-for header: parsing addresses and matching networks on every call showed in
    the profile, and a connection (its peer) and the gateway's headers repeat call after call.

    x-forwarded-for counts only on a call that carries the gateway secret: a trusted address
    alone is not enough, since every process on the gateway's host has it. Without a secret
    configured no forwarded address is believed (every call is its TCP peer's)."""

    def __init__(self, trusted_proxies: Sequence[IPNetwork], gateway_secret: str | None) -> None:
        trusted = tuple(trusted_proxies)
        self._secret = gateway_secret.encode() if gateway_secret else None

        @lru_cache(maxsize=4096)
        def resolve(peer: str, forwarded_for: str | None) -> str | None:
            return client_address(peer, forwarded_for, trusted)

        self.resolve = resolve

    def forwarded_for(self, metadata: Mapping[str, str]) -> str | None:
        """The call's x-forwarded-for, if the gateway vouches for it (constant-time check)."""
        forwarded = metadata.get(FORWARDED_FOR_HEADER)
        if forwarded is None or self._secret is None:
            return None
        offered = metadata.get(GATEWAY_SECRET_HEADER)
        if offered is None or not hmac.compare_digest(offered.encode(), self._secret):
            return None
        return forwarded


def begin(
    method: str, metadata: Mapping[str, str], peer: str, clients: ClientAddresses
) -> CallRecord:
    """Open the call's record and make its request id, trace context and client address
    current."""
    request_id = request_id_for(metadata.get(REQUEST_ID_HEADER))
    client = clients.resolve(peer, clients.forwarded_for(metadata))
    request_id_var.set(request_id)
    client_address_var.set(client)
    span = None
    # Health checks come every few seconds from every balancer, each a trace of its own: none.
    if not method.startswith(INFRASTRUCTURE_PREFIX):
        span = tracing.begin_server_span(method, metadata)
        if span is not None:
            span.set_attribute(REQUEST_ID_ATTRIBUTE, request_id)
    return CallRecord(method, request_id, client, span)


def check_deadline(context: grpc.aio.ServicerContext[Any, Any]) -> None:
    """A call that waited past its deadline (an overloaded server) runs no handler."""
    if deadline_passed(context):
        raise DeadlineExceeded("the deadline had passed before the call was handled")


def deadline_passed(context: grpc.aio.ServicerContext[Any, Any]) -> bool:
    remaining = context.time_remaining()
    return remaining is not None and remaining <= 0


# A caller's deadline runs from when it sent the call, ours from when the call reached us, so
# the caller's passes first and its cancellation reaches us while ours still has this much left
# at most (more on a busy machine, CI saw a call logged CANCELLED that its caller saw pass its
# deadline): a call cancelled this close to its deadline is logged as past it.
DEADLINE_SLACK_SECONDS = 0.25


def cancelled_code(context: grpc.aio.ServicerContext[Any, Any]) -> grpc.StatusCode:
    """grpc cancels the handler when the deadline passes or the client goes away."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= DEADLINE_SLACK_SECONDS:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.CANCELLED


def end_call(record: CallRecord) -> None:
    """The call's status is known: write its access line and end its span, once."""
    if record.logged:
        return
    log_access(record)
    if record.span is not None:
        code = _code(record.code)
        tracing.end_rpc_span(record.span, code.name, code.value[0], code in SERVER_ERRORS)


def log_access(record: CallRecord) -> None:
    """Write the call's line, once: before its status leaves, so that a caller who has the
    answer can count on the line being written."""
    if record.logged:
        return
    record.logged = True
    # Health checks arrive every few seconds from every balancer: keep them quiet.
    level = logging.DEBUG if record.method.startswith(INFRASTRUCTURE_PREFIX) else logging.INFO
    if not access_log.isEnabledFor(level):
        return
    access_log.log(
        level,
        "rpc",
        extra={
            "method": record.method,
            "client": record.client,
            "code": code_name(record.code),
            "duration_ms": round(record.elapsed() * 1000, 3),
        },
    )


def request_id_for(offered: str | None) -> str:
    if (
        offered is not None
        and 0 < len(offered) <= MAX_REQUEST_ID_LENGTH
        and offered.isprintable()
        # Every line of the call carries its id: never one that holds an API key.
        and API_KEY_PREFIX not in offered.lower()
    ):
        return offered
    return f"{_ids.getrandbits(128):032x}"


def code_name(code: grpc.StatusCode | int) -> str:
    return _code(code).name


def _code(code: grpc.StatusCode | int) -> grpc.StatusCode:
    # After abort() grpc reports the code as a plain int on some paths.
    if isinstance(code, grpc.StatusCode):
        return code
    return next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
