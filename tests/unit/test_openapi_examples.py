"""The examples gateway/openapi.json gives request fields: one per field format, each a value
the services' own validators accept."""

from __future__ import annotations

from r3mes.common.v1 import options_pb2

from services.core.interceptors.validation import STRING_FORMATS
from tools.openapi_schemas import FORMAT_EXAMPLES


def test_every_format_has_an_example_that_its_validator_accepts() -> None:
    formats = set(options_pb2.Format.values()) - {options_pb2.FORMAT_UNSPECIFIED}

    assert set(FORMAT_EXAMPLES) == formats
    for format_value, example in FORMAT_EXAMPLES.items():
        STRING_FORMATS[format_value](example, options_pb2.FieldRules())
