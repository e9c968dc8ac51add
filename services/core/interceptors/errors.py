"""Error mapping: every failure leaves the server as one google.rpc.Status shape.

Our own errors keep their code, reason and details; anything else is a bug: the caller gets
INTERNAL with an incident id and nothing more, and the log gets the traceback under that id.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from services.core.errors import ErrorDetails, R3mesError, Unimplemented

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ErrorDomains:
    """The ErrorInfo domain of each proto service a server hosts (`users.r3mes.network`), and
    the one of everything else it serves (health, reflection)."""

    default: str
    by_service: Mapping[str, str] = field(default_factory=dict)

    def of(self, method_name: str) -> str:
        # "/r3mes.users.v1.UsersService/GetUser" -> "r3mes.users.v1.UsersService"
        return self.by_service.get(method_name[1:].partition("/")[0], self.default)


class ErrorMapping:
    """The status a failure leaves the server as, in the error domain of the called service."""

    def __init__(self, domains: ErrorDomains | str) -> None:
        self._domains = ErrorDomains(domains) if isinstance(domains, str) else domains

    def status_of(self, error: Exception, method_name: str) -> status_pb2.Status:
        domain = self._domains.of(method_name)
        if isinstance(error, R3mesError):
            return to_status(error, domain)
        if isinstance(error, NotImplementedError):
            # What generated base servicers raise for an RPC that is declared but not built.
            return to_status(Unimplemented(f"{method_name} is not implemented yet"), domain)
        incident = uuid.uuid4().hex
        logger.error(
            "unexpected error",
            exc_info=error,
            extra={"incident_id": incident, "method": method_name},
        )
        status = to_status(
            R3mesError(f"internal error (incident {incident})", reason="INTERNAL"), domain
        )
        status.code = grpc.StatusCode.INTERNAL.value[0]
        return status


# Set by the gateway's transcoder on a REST call it turned into this gRPC call.
TRANSCODED_HEADER = "x-envoy-original-path"


async def refuse(
    context: grpc.aio.ServicerContext[Any, Any],
    status: status_pb2.Status,
    *,
    headers: Sequence[tuple[str, str]] = (),
    headers_first: bool = False,
) -> None:
    """End the call with `status` (raises grpc's AbortError, which grpc expects to see).

    Not `set_code` and return: grpc would then send an empty response message before the
    status, which the gateway's transcoder renders as the body (`{}`) instead of the error.
    A refusal is a trailers-only reply, one batch, `headers` among the trailers.
    `headers_first` sends `headers` on their own first, as headers: the transcoder turns a
    trailers-only error into JSON but drops its grpc-status, and the gateway's access log then
    records the HTTP code's gRPC counterpart (400 as 13); and it passes on no other trailer.
    """
    rich = rpc_status.to_status(status)
    if headers_first:
        with suppress(grpc.aio.UsageError):  # a stream that has sent messages has sent them
            await context.send_initial_metadata(headers)
        headers = ()
    # Added to what the call already carries (its request id).
    trailing = (*context.trailing_metadata(), *headers, *rich.trailing_metadata)
    await context.abort(rich.code, rich.details, trailing)


def to_status(error: R3mesError, domain: str) -> status_pb2.Status:
    info = error_details_pb2.ErrorInfo(
        reason=error.reason, domain=domain, metadata=dict(error.details.metadata)
    )
    details = [info, *_extra_details(error.details)]
    return status_pb2.Status(
        code=grpc.StatusCode[error.code].value[0],
        message=error.message,
        details=[_packed(detail) for detail in details],
    )


def _extra_details(details: ErrorDetails) -> list[Any]:
    extra: list[Any] = []
    if details.field_violations:
        extra.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in details.field_violations
                ]
            )
        )
    if details.precondition_violations:
        extra.append(
            error_details_pb2.PreconditionFailure(
                violations=[
                    error_details_pb2.PreconditionFailure.Violation(
                        type=v.type, subject=v.subject, description=v.description
                    )
                    for v in details.precondition_violations
                ]
            )
        )
    if details.quota_violations:
        extra.append(
            error_details_pb2.QuotaFailure(
                violations=[
                    error_details_pb2.QuotaFailure.Violation(
                        subject=v.subject, description=v.description
                    )
                    for v in details.quota_violations
                ]
            )
        )
    if details.retry_after_seconds is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(round(details.retry_after_seconds * 1e9))
        extra.append(error_details_pb2.RetryInfo(retry_delay=delay))
    return extra


def _packed(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed
