"""Envoy's access log: one line per request, with the gRPC code the client received, and never a
credential, wherever the client put it (gateway/credentials.py refuses those requests and names
what to print instead).

A small Lua filter, written by hand because nothing in Envoy does it, records the status of each
gRPC reply before the gRPC-Web filter moves its trailers into the body and the transcoder turns a
trailers-only reply into JSON: after either, no formatter can read it.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.credentials import LOG_METADATA, logged_metadata
from gateway.typed import typed

GRPC_STATUS_KEY = "grpc_status"
# Runs on the upstream's reply before the transcoder and the gRPC-Web filter change it: the
# status a REST client reads in the JSON body and a gRPC-Web client in the body's trailer frame
# is no longer in any header or trailer when the access log is written.
_GRPC_STATUS_RECORDER = f"""
local function record(handle, status)
  handle:streamInfo():dynamicMetadata():set("{LOG_METADATA}", "{GRPC_STATUS_KEY}", status)
end

function envoy_on_response(handle)
  local headers = handle:headers()
  local content_type = headers:get("content-type") or ""
  if content_type:sub(1, 16) ~= "application/grpc" then return end
  local status = headers:get("grpc-status")
  if status ~= nil then return record(handle, status) end
  -- Read as they pass, never buffered: reflection's streams go through here too.
  for _ in handle:bodyChunks() do end
  local trailers = handle:trailers()
  if trailers ~= nil and trailers:get("grpc-status") ~= nil then
    record(handle, trailers:get("grpc-status"))
  end
end
"""


def grpc_status_recorder() -> dict[str, Any]:
    """Last before the router: it must see the reply as the service sent it."""
    return {
        "name": "r3mes.grpc_status_recorder",
        "typed_config": typed(
            "extensions.filters.http.lua.v3",
            "Lua",
            default_source_code={"inline_string": _GRPC_STATUS_RECORDER},
        ),
    }


def _coalesce(*operators: dict[str, str]) -> str:
    return f"%COALESCE({json.dumps({'operators': list(operators)}, separators=(',', ':'))})%"


# The code the client received, first found of: a grpc-status header (trailers-only replies,
# and every local reply: gateway/local_replies.py sets one for each HTTP status Envoy produces,
# for REST too), the trailers a gRPC client gets, and the upstream's status as recorded above.
# Envoy's own %GRPC_STATUS% guesses from the HTTP status where these are missing (UNKNOWN for a
# 200), and a reply without any of them (a reset stream) is better logged `-`. All three are
# strings, so JSON lines always carry a string (or null).
GRPC_STATUS = _coalesce(
    {"command": "RESP", "param": "grpc-status"},
    {"command": "TRAILER", "param": "grpc-status"},
    {"command": "DYNAMIC_METADATA", "param": f"{LOG_METADATA}:{GRPC_STATUS_KEY}"},
)


def _unless_redacted(field: str, operator: str, param: str) -> str:
    """The request's value, or what a route refusing a credential in it says to print."""
    return _coalesce(
        {"command": "METADATA", "param": logged_metadata(field)},
        {"command": operator, "param": param},
    )


PATH = _unless_redacted("path", "REQ", "X-ENVOY-ORIGINAL-PATH?:PATH")
GRPC_PATH = _unless_redacted("path", "REQ", ":PATH")
USER_AGENT = _unless_redacted("user_agent", "REQ", "USER-AGENT")

# The same timestamp shape as the services' plain log lines, so `make run`'s interleaved output
# has one timestamp per line whoever wrote it (the runner adds none).
_TEXT_FORMAT = (
    "%START_TIME(%Y-%m-%d %H:%M:%S.%3f)% "
    f"%REQ(X-ENVOY-ORIGINAL-METHOD?:METHOD)% {PATH} -> %RESPONSE_CODE% grpc={GRPC_STATUS} "
    "%DURATION%ms client=%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% id=%REQ(X-REQUEST-ID)% "
    "trace=%TRACE_ID%\n"
)
_JSON_FORMAT = {
    "method": "%REQ(X-ENVOY-ORIGINAL-METHOD?:METHOD)%",
    "path": PATH,
    "grpc_path": GRPC_PATH,
    "status": "%RESPONSE_CODE%",
    "grpc_status": GRPC_STATUS,
    "flags": "%RESPONSE_FLAGS%",
    "duration_ms": "%DURATION%",
    "client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    "upstream": "%UPSTREAM_HOST%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    # The trace the services' log lines carry as trace_id (gateway/tracing.py).
    "trace_id": "%TRACE_ID%",
    "user_agent": USER_AGENT,
}


def access_log(as_json: bool) -> list[dict[str, Any]]:
    """HttpConnectionManager.access_log: one line per request on standard output."""
    log_format: dict[str, Any]
    if as_json:
        log_format = {"json_format": _JSON_FORMAT}
    else:
        log_format = {"text_format_source": {"inline_string": _TEXT_FORMAT}}
    return [
        {
            "name": "envoy.access_loggers.stdout",
            "typed_config": typed(
                "extensions.access_loggers.stream.v3", "StdoutAccessLog", log_format=log_format
            ),
        }
    ]
