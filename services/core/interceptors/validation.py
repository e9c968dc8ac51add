"""Validation: every request is checked against its proto annotations before any handler runs.

`google.api.field_behavior = REQUIRED` makes a field mandatory; `(r3mes.common.v1.rules)` names
its format (checked by services.core.validators) and integer bounds. All violations of a request
are reported together, as INVALID_ARGUMENT with a BadRequest naming each field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from google.api import field_behavior_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from r3mes.common.v1 import options_pb2

from services.core import validators
from services.core.errors import FieldViolation, InvalidArgument
from services.core.interceptors.parsing import Unparseable

StringCheck = Callable[[str, options_pb2.FieldRules], object]

STRING_FORMATS: dict[int, StringCheck] = {
    options_pb2.FORMAT_WALLET_ADDRESS: lambda value, _: validators.wallet_address(value),
    options_pb2.FORMAT_API_KEY: lambda value, _: validators.api_key(value),
    options_pb2.FORMAT_NAME: lambda value, rules: validators.name(
        value, **({"max_length": rules.max_length} if rules.HasField("max_length") else {})
    ),
    options_pb2.FORMAT_FREE_TEXT: lambda value, rules: validators.free_text(
        value, **({"max_length": rules.max_length} if rules.HasField("max_length") else {})
    ),
    options_pb2.FORMAT_URL: lambda value, _: validators.parse_outbound_url(value),
    options_pb2.FORMAT_IDEMPOTENCY_KEY: lambda value, _: validators.idempotency_key(value),
}


@dataclass(frozen=True)
class FieldCheck:
    field: FieldDescriptor
    required: bool
    rules: options_pb2.FieldRules | None


def validate(request: Any) -> None:
    """The chain's validation step; a streamed request's messages are the handler's to check."""
    if isinstance(request, Unparseable):
        raise request.error()
    if isinstance(request, Message):
        violations = find_violations(request)
        if violations:
            raise InvalidArgument.for_fields(violations)


def find_violations(message: Message, prefix: str = "") -> list[FieldViolation]:
    violations: list[FieldViolation] = []
    for check in _checks(message.DESCRIPTOR):
        path = prefix + check.field.name
        violations.extend(_check_field(message, check, path))
    return violations


def _check_field(message: Message, check: FieldCheck, path: str) -> list[FieldViolation]:
    field = check.field
    value = getattr(message, field.name)
    if _is_repeated(field):
        if check.required and not value:
            return [FieldViolation(path, "is required")]
        return [
            v
            for i, item in enumerate(value)
            for v in _check_value(field, check, item, f"{path}[{i}]")
        ]
    present = message.HasField(field.name) if field.has_presence else value != field.default_value
    if not present:
        return [FieldViolation(path, "is required")] if check.required else []
    return _check_value(field, check, value, path)


def _check_value(
    field: FieldDescriptor, check: FieldCheck, value: Any, path: str
) -> list[FieldViolation]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return find_violations(value, prefix=f"{path}.")
    rules = check.rules
    if rules is None:
        return []
    try:
        if isinstance(value, str):
            _check_length(value, rules)
        if isinstance(value, str) and rules.format in STRING_FORMATS:
            STRING_FORMATS[rules.format](value, rules)
        if isinstance(value, int) and not isinstance(value, bool):
            _check_bounds(value, rules)
    except validators.InvalidValue as problem:
        return [FieldViolation(path, str(problem))]
    return []


def _check_length(value: str, rules: options_pb2.FieldRules) -> None:
    if rules.HasField("max_length") and len(value) > rules.max_length:
        raise validators.InvalidValue(f"must be at most {rules.max_length} characters")


def _check_bounds(value: int, rules: options_pb2.FieldRules) -> None:
    if rules.HasField("min") and value < rules.min:
        raise validators.InvalidValue(f"must be at least {rules.min}")
    if rules.HasField("max") and value > rules.max:
        raise validators.InvalidValue(f"must be at most {rules.max}")


def _is_repeated(field: FieldDescriptor) -> bool:
    return field.is_repeated


@cache
def _checks(descriptor: Descriptor) -> tuple[FieldCheck, ...]:
    """The fields of a message type worth looking at, found once per type."""
    checks = []
    for field in descriptor.fields:
        options = field.GetOptions()
        required = (
            field_behavior_pb2.REQUIRED in options.Extensions[field_behavior_pb2.field_behavior]
        )
        rules = (
            options.Extensions[options_pb2.rules]
            if options.HasExtension(options_pb2.rules)
            else None
        )
        nested = field.type == FieldDescriptor.TYPE_MESSAGE and bool(_checks_of_message(field))
        if required or rules is not None or nested:
            checks.append(FieldCheck(field, required, rules))
    return tuple(checks)


def _checks_of_message(field: FieldDescriptor) -> tuple[FieldCheck, ...]:
    if field.message_type is None or field.message_type.full_name.startswith("google.protobuf."):
        return ()
    return _checks(field.message_type)
