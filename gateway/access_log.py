"""Envoy's access log: one line per request, with the gRPC code the client received, and never a
credential, wherever the client put it.

Two small Lua filters serve it (gateway/filters.py places them in the chain). They are written by
hand because nothing in Envoy does either job: its formatters print what the client sent as it
is, no filter of Envoy's rewrites a header by a pattern, and the gRPC-Web filter moves the
upstream's trailers into the body before any formatter can read the status from them.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.typed import typed

GRPC_STATUS_METADATA = "r3mes.access_log"
GRPC_STATUS_KEY = "grpc_status"
CREDENTIAL_IN_URL_MESSAGE = (
    "an API key was sent in the URL, which proxies and servers log: send it in the x-api-key "
    "header (or authorization: Bearer), and revoke this one"
)
REDACTED = "REDACTED"

# API keys are `r3mes_` and letters or digits (services/core/validators.py). A URL part or a
# logged header holding that prefix, after percent-decoding and in any case, is treated as one:
# no field of the API takes such a value, and a look-alike costs only a 400.
_CREDENTIAL_GUARD = f"""
local MESSAGE = "{CREDENTIAL_IN_URL_MESSAGE}"

local function decoded(text)
  return (text:gsub("%%(%x%x)", function(hex) return string.char(tonumber(hex, 16)) end))
end

local function holds_key(text)
  return decoded(text):lower():find("r3mes_%w") ~= nil
end

local function redacted(path)
  return (path:gsub("[^/?&=;]+", function(part)
    if holds_key(part) then return "{REDACTED}" end
  end))
end

function envoy_on_request(handle)
  local headers = handle:headers()
  for _, name in ipairs({{"user-agent", "referer"}}) do
    local value = headers:get(name)
    if value ~= nil and holds_key(value) then headers:replace(name, "{REDACTED}") end
  end
  local path = headers:get(":path")
  if path ~= nil and holds_key(path) then
    headers:replace(":path", redacted(path))
    local content_type = headers:get("content-type") or ""
    if content_type:sub(1, 16) == "application/grpc" then
      -- gRPC and gRPC-Web: a trailers-only reply, INVALID_ARGUMENT, as a service would send it.
      handle:respond({{
        [":status"] = "200",
        ["content-type"] = content_type,
        ["grpc-status"] = "3",
        ["grpc-message"] = MESSAGE,
      }}, "")
    else
      handle:respond({{[":status"] = "400"}}, MESSAGE)
    end
  end
end
"""

# Runs on the upstream's reply before the transcoder and the gRPC-Web filter change it: the
# status a REST client reads in the JSON body and a gRPC-Web client in the body's trailer frame
# is no longer in any header or trailer when the access log is written.
_GRPC_STATUS_RECORDER = f"""
local function record(handle, status)
  handle:streamInfo():dynamicMetadata():set("{GRPC_STATUS_METADATA}", "{GRPC_STATUS_KEY}", status)
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


def _lua(name: str, source: str) -> dict[str, Any]:
    return {
        "name": name,
        "typed_config": typed(
            "extensions.filters.http.lua.v3", "Lua", default_source_code={"inline_string": source}
        ),
    }


def credential_guard() -> dict[str, Any]:
    """First in the chain, so that even a preflight or a refusal is logged without the key."""
    return _lua("r3mes.credential_guard", _CREDENTIAL_GUARD)


def grpc_status_recorder() -> dict[str, Any]:
    """Last before the router: it must see the reply as the service sent it."""
    return _lua("r3mes.grpc_status_recorder", _GRPC_STATUS_RECORDER)


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
    {"command": "DYNAMIC_METADATA", "param": f"{GRPC_STATUS_METADATA}:{GRPC_STATUS_KEY}"},
)

# The same timestamp shape as the services' plain log lines, so `make run`'s interleaved output
# has one timestamp per line whoever wrote it (the runner adds none).
_TEXT_FORMAT = (
    "%START_TIME(%Y-%m-%d %H:%M:%S.%3f)% "
    "%REQ(X-ENVOY-ORIGINAL-METHOD?:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% -> %RESPONSE_CODE% "
    f"grpc={GRPC_STATUS} %DURATION%ms client=%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% "
    "id=%REQ(X-REQUEST-ID)%\n"
)
_JSON_FORMAT = {
    "method": "%REQ(X-ENVOY-ORIGINAL-METHOD?:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "grpc_path": "%REQ(:PATH)%",
    "status": "%RESPONSE_CODE%",
    "grpc_status": GRPC_STATUS,
    "flags": "%RESPONSE_FLAGS%",
    "duration_ms": "%DURATION%",
    "client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    "upstream": "%UPSTREAM_HOST%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "user_agent": "%REQ(USER-AGENT)%",
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
