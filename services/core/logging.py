"""Structured logs: one JSON object per line, with the current request id, trace id and span id
(services.core.tracing) on every record."""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

from services.core.settings import Settings
from services.core.tracing import current_ids

REQUEST_ID_HEADER = "x-request-id"
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# Attributes every LogRecord has; anything else was passed with `extra=` and belongs in the line.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_call_fields())
        entry.update(_extras(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class PlainFormatter(logging.Formatter):
    """For people at a terminal: the usual line, then the `extra=` fields as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        fields = dict(_extras(record))
        fields.update(_call_fields())
        suffix = "".join(f" {key}={value}" for key, value in fields.items())
        return super().format(record) + suffix


def _call_fields() -> dict[str, str]:
    """What ties a line to its call: the request id, and the trace it belongs to."""
    fields = {}
    request_id = request_id_var.get()
    if request_id is not None:
        fields["request_id"] = request_id
    ids = current_ids()
    if ids is not None:
        fields["trace_id"], fields["span_id"] = ids
    return fields


def _extras(record: logging.LogRecord) -> list[tuple[str, object]]:
    return [(k, v) for k, v in vars(record).items() if k not in _STANDARD_ATTRIBUTES]


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(PlainFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
