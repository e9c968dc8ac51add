"""Requests carrying an API key where a log would keep it (the URL, the user agent) are refused by
the gateway's first routes, and logged without it.

Keys belong in `x-api-key` or `authorization: Bearer`, which nothing logs. Envoy's access log
prints the URL and (JSON lines) the user agent as the client sent them, so a route matches a key
there, answers 400 / INVALID_ARGUMENT at once, and its metadata gives the log `REDACTED` to print
instead (gateway/access_log.py). Routes, not a filter: the match is one regular expression per
request, where a Lua filter cost tens of microseconds of Envoy's CPU on every call.
"""

from __future__ import annotations

from typing import Any

from gateway.typed import typed
from services.core.validators import API_KEY_PREFIX

REDACTED = "REDACTED"
LOG_METADATA = "r3mes.access_log"
CREDENTIAL_IN_REQUEST_MESSAGE = (
    "an API key was sent where proxies and servers log it (the URL or the user agent): send it "
    "in the x-api-key header (or authorization: Bearer), and revoke this one"
)
# gRPC and gRPC-Web callers read a trailers-only reply; REST ones get the local reply mapper's
# JSON status (gateway/local_replies.py).
_GRPC_CONTENT_TYPE = "application/grpc"


def _character(char: str) -> str:
    """`char`, or its percent-encoding, in any case: the transcoder decodes what it reads."""
    return f"(?:{char}|%{ord(char):02x})"


# `r3mes_` then a letter or digit (a key's body), anywhere: no field of the API takes a value
# that looks so, and a look-alike costs only a 400. RE2, matched against the whole value.
_KEY = (
    "(?i).*" + "".join(_character(char) for char in API_KEY_PREFIX) + "(?:[0-9a-z]|%[0-9a-f]{2}).*"
)
# Where the log reads what a client sent, and the key of the route metadata that replaces it.
_LOGGED_HEADERS = {":path": "path", "user-agent": "user_agent"}


def _header_holds_key(header: str) -> dict[str, Any]:
    return {"name": header, "string_match": {"safe_regex": {"regex": _KEY}}}


def _refusal(grpc: bool) -> dict[str, Any]:
    if grpc:
        # Envoy turns a local reply to a gRPC call into a gRPC status of its own choosing (400
        # would be INTERNAL): this one says the code and message itself, with HTTP 200.
        return {
            "direct_response": {"status": 200},
            "response_headers_to_add": [
                {
                    "header": {"key": name, "value": value},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                }
                for name, value in (
                    ("content-type", _GRPC_CONTENT_TYPE),
                    ("grpc-status", "3"),
                    ("grpc-message", CREDENTIAL_IN_REQUEST_MESSAGE),
                )
            ],
        }
    return {
        "direct_response": {"status": 400, "body": {"inline_string": CREDENTIAL_IN_REQUEST_MESSAGE}}
    }


def _route(header: str, grpc: bool) -> dict[str, Any]:
    matchers = [_header_holds_key(header)]
    if grpc:
        matchers.append({"name": "content-type", "string_match": {"prefix": _GRPC_CONTENT_TYPE}})
    return {
        "name": f"credential in {header}{' (gRPC)' if grpc else ''}",
        "match": {"prefix": "/", "headers": matchers},
        # What the access log prints in place of every field a key may be in.
        "metadata": {
            "filter_metadata": {
                LOG_METADATA: {field: REDACTED for field in _LOGGED_HEADERS.values()}
            }
        },
        # Else the transcoder would rewrite a REST call's path to its RPC and routing would
        # start again there, past this route.
        "typed_per_filter_config": {
            "envoy.filters.http.grpc_json_transcoder": typed(
                "config.route.v3", "FilterConfig", disabled=True
            )
        },
        **_refusal(grpc),
    }


def credential_routes() -> list[dict[str, Any]]:
    """First of the virtual host's routes: every request is matched against them before anything
    else answers it (preflights included, which the CORS filter answers on any route). The
    first match wins, so each gRPC route comes before the one that answers everyone else."""
    return [_route(header, grpc) for header in _LOGGED_HEADERS for grpc in (True, False)]


def logged_metadata(field: str) -> str:
    """The route metadata the access log reads for `field` ("path", "user_agent")."""
    return f"ROUTE:{LOG_METADATA}:{field}"
