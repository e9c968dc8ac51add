"""The one exception hierarchy of every service.

Each class carries a gRPC status code (by name, so that domain code needs no grpc import) and a
stable UPPER_SNAKE `reason`; the error-mapping interceptor renders them as google.rpc.Status with an
ErrorInfo and, where it fits, BadRequest, PreconditionFailure, QuotaFailure and RetryInfo details.
Services subclass these with their own reasons (`class UserNotFound(NotFound)`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar


@dataclass(frozen=True)
class FieldViolation:
    """One bad request field: `field` is its path (`user.wallet_address`)."""

    field: str
    description: str


@dataclass(frozen=True)
class PreconditionViolation:
    type: str
    subject: str
    description: str


@dataclass(frozen=True)
class QuotaViolation:
    subject: str
    description: str


@dataclass(frozen=True)
class ErrorDetails:
    """Everything the error-mapping interceptor may render besides code, reason and message."""

    metadata: Mapping[str, str] = field(default_factory=dict)
    field_violations: Sequence[FieldViolation] = ()
    precondition_violations: Sequence[PreconditionViolation] = ()
    quota_violations: Sequence[QuotaViolation] = ()
    retry_after_seconds: float | None = None


class R3mesError(Exception):
    """Base of every error a caller may see. The message is sent to the caller: no secrets."""

    code: ClassVar[str] = "UNKNOWN"
    reason: str = "UNKNOWN"

    def __init__(
        self, message: str, *, reason: str | None = None, details: ErrorDetails | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.details = details or ErrorDetails()


class InvalidArgument(R3mesError):
    code = "INVALID_ARGUMENT"
    reason = "INVALID_ARGUMENT"

    @classmethod
    def for_fields(cls, violations: Sequence[FieldViolation]) -> InvalidArgument:
        names = ", ".join(v.field for v in violations)
        return cls(f"invalid fields: {names}", details=ErrorDetails(field_violations=violations))

    @classmethod
    def for_field(cls, name: str, description: str) -> InvalidArgument:
        return cls.for_fields([FieldViolation(name, description)])


class Unauthenticated(R3mesError):
    code = "UNAUTHENTICATED"
    reason = "UNAUTHENTICATED"


class PermissionDenied(R3mesError):
    code = "PERMISSION_DENIED"
    reason = "PERMISSION_DENIED"


class NotFound(R3mesError):
    code = "NOT_FOUND"
    reason = "NOT_FOUND"


class AlreadyExists(R3mesError):
    code = "ALREADY_EXISTS"
    reason = "ALREADY_EXISTS"


class FailedPrecondition(R3mesError):
    code = "FAILED_PRECONDITION"
    reason = "FAILED_PRECONDITION"


class Aborted(R3mesError):
    """A conflict with a concurrent change; the caller may retry the whole operation."""

    code = "ABORTED"
    reason = "ABORTED"


class TransactionConflict(Aborted):
    """The database refused a unit of work because of a concurrent one (a serialization failure,
    a deadlock, SQLite busy). The unit of work retries these itself before answering ABORTED."""

    reason = "CONCURRENT_CHANGE"


class ResourceExhausted(R3mesError):
    code = "RESOURCE_EXHAUSTED"
    reason = "RESOURCE_EXHAUSTED"


class Unavailable(R3mesError):
    """A dependency (database, another service) cannot be reached; retrying later may succeed."""

    code = "UNAVAILABLE"
    reason = "UNAVAILABLE"


class DeadlineExceeded(R3mesError):
    code = "DEADLINE_EXCEEDED"
    reason = "DEADLINE_EXCEEDED"


class Unimplemented(R3mesError):
    code = "UNIMPLEMENTED"
    reason = "UNIMPLEMENTED"
