"""The error hierarchy and how it is rendered as google.rpc.Status for every caller."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from services.core.errors import (
    Aborted,
    AlreadyExists,
    DeadlineExceeded,
    ErrorDetails,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PreconditionViolation,
    QuotaViolation,
    R3mesError,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from services.core.interceptors.errors import to_status

DOMAIN = "credits.r3mes.network"


def _unpacked(status: status_pb2.Status) -> list[Any]:
    """The status's details as messages, in order, whatever their type."""
    kinds = [
        error_details_pb2.ErrorInfo,
        error_details_pb2.BadRequest,
        error_details_pb2.PreconditionFailure,
        error_details_pb2.QuotaFailure,
        error_details_pb2.RetryInfo,
    ]
    messages = []
    for packed in status.details:
        kind = next(k for k in kinds if packed.Is(k.DESCRIPTOR))
        message = kind()
        packed.Unpack(message)
        messages.append(message)
    return messages


def _detail(status: status_pb2.Status, kind: type[Any]) -> Any:
    found = [message for message in _unpacked(status) if isinstance(message, kind)]
    assert len(found) == 1, f"expected one {kind.__name__}, found {len(found)}"
    return found[0]


@pytest.mark.parametrize(
    ("error_class", "code"),
    [
        (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
        (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
        (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
        (NotFound, grpc.StatusCode.NOT_FOUND),
        (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
        (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
        (Aborted, grpc.StatusCode.ABORTED),
        (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (Unavailable, grpc.StatusCode.UNAVAILABLE),
        (DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
        (Unimplemented, grpc.StatusCode.UNIMPLEMENTED),
        (R3mesError, grpc.StatusCode.UNKNOWN),
    ],
)
def test_each_error_class_has_its_grpc_code_and_a_default_reason_of_the_same_name(
    error_class: type[R3mesError], code: grpc.StatusCode
) -> None:
    status = to_status(error_class("it went wrong"), DOMAIN)

    assert status.code == code.value[0]
    assert status.message == "it went wrong"
    info = _detail(status, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain) == (code.name, DOMAIN)


def test_a_plain_error_carries_only_its_error_info() -> None:
    status = to_status(NotFound("no such reservation", reason="RESERVATION_NOT_FOUND"), DOMAIN)

    [info] = _unpacked(status)
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert info.reason == "RESERVATION_NOT_FOUND"
    assert dict(info.metadata) == {}


def test_a_subclass_reason_is_kept_and_an_explicit_reason_wins() -> None:
    class InsufficientCredits(FailedPrecondition):
        reason = "INSUFFICIENT_CREDITS"

    assert InsufficientCredits("short").reason == "INSUFFICIENT_CREDITS"
    assert InsufficientCredits("short", reason="OTHER").reason == "OTHER"
    # The override belongs to that instance only.
    assert InsufficientCredits("short").reason == "INSUFFICIENT_CREDITS"
    assert FailedPrecondition("x").reason == "FAILED_PRECONDITION"


def test_error_info_carries_the_metadata() -> None:
    error = FailedPrecondition(
        "not enough credits",
        reason="INSUFFICIENT_CREDITS",
        details=ErrorDetails(metadata={"available_micro_credits": "250", "wallet": "remes1x"}),
    )

    info = _detail(to_status(error, DOMAIN), error_details_pb2.ErrorInfo)

    assert info.reason == "INSUFFICIENT_CREDITS"
    assert info.domain == DOMAIN
    assert dict(info.metadata) == {"available_micro_credits": "250", "wallet": "remes1x"}


def test_invalid_argument_for_fields_names_every_field_in_order() -> None:
    error = InvalidArgument.for_fields(
        [
            FieldViolation("wallet_address", "is required"),
            FieldViolation("requests[1].days", "must be at most 365"),
        ]
    )

    assert error.code == "INVALID_ARGUMENT"
    assert error.reason == "INVALID_ARGUMENT"
    assert error.message == "invalid fields: wallet_address, requests[1].days"
    status = to_status(error, DOMAIN)
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    bad_request = _detail(status, error_details_pb2.BadRequest)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        ("wallet_address", "is required"),
        ("requests[1].days", "must be at most 365"),
    ]


def test_invalid_argument_for_one_field() -> None:
    error = InvalidArgument.for_field("page_token", "is not from this request")

    assert error.message == "invalid fields: page_token"
    bad_request = _detail(to_status(error, DOMAIN), error_details_pb2.BadRequest)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        ("page_token", "is not from this request")
    ]


def test_precondition_failure_lists_each_violation() -> None:
    error = FailedPrecondition(
        "not enough credits",
        reason="INSUFFICIENT_CREDITS",
        details=ErrorDetails(
            precondition_violations=[
                PreconditionViolation("CREDITS", "wallets/remes1x", "has 250, needs 1000")
            ]
        ),
    )

    failure = _detail(to_status(error, DOMAIN), error_details_pb2.PreconditionFailure)

    assert [(v.type, v.subject, v.description) for v in failure.violations] == [
        ("CREDITS", "wallets/remes1x", "has 250, needs 1000")
    ]


def test_quota_failure_and_retry_info_tell_the_caller_when_to_come_back() -> None:
    error = ResourceExhausted(
        "too many requests",
        reason="RATE_LIMITED",
        details=ErrorDetails(
            quota_violations=[QuotaViolation("wallet:remes1x", "60 calls per minute")],
            retry_after_seconds=1.5,
        ),
    )

    status = to_status(error, DOMAIN)

    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    quota = _detail(status, error_details_pb2.QuotaFailure)
    assert [(v.subject, v.description) for v in quota.violations] == [
        ("wallet:remes1x", "60 calls per minute")
    ]
    retry = _detail(status, error_details_pb2.RetryInfo)
    assert (retry.retry_delay.seconds, retry.retry_delay.nanos) == (1, 500_000_000)


def test_a_zero_retry_delay_is_still_sent() -> None:
    error = Unavailable("later", details=ErrorDetails(retry_after_seconds=0))

    retry = _detail(to_status(error, DOMAIN), error_details_pb2.RetryInfo)

    assert retry.retry_delay.ToNanoseconds() == 0


def test_the_error_info_comes_first_and_every_detail_survives_the_wire_encoding() -> None:
    error = InvalidArgument(
        "bad",
        details=ErrorDetails(
            metadata={"k": "v"},
            field_violations=[FieldViolation("a", "b")],
            precondition_violations=[PreconditionViolation("t", "s", "d")],
            quota_violations=[QuotaViolation("s", "d")],
            retry_after_seconds=2,
        ),
    )
    status = to_status(error, DOMAIN)

    # What the interceptor sends: the status in the grpc-status-details-bin trailer.
    rich = rpc_status.to_status(status)
    [(key, encoded)] = rich.trailing_metadata
    decoded = status_pb2.Status.FromString(encoded)

    assert key == "grpc-status-details-bin"
    assert rich.code is grpc.StatusCode.INVALID_ARGUMENT
    assert rich.details == "bad"
    assert decoded == status
    assert [type(message).__name__ for message in _unpacked(decoded)] == [
        "ErrorInfo",
        "BadRequest",
        "PreconditionFailure",
        "QuotaFailure",
        "RetryInfo",
    ]
