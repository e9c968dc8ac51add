"""Envoy's own error replies (no route, body too large, upstream down) as google.rpc.Status JSON.

Errors from the services already arrive as google.rpc.Status and the transcoder renders them;
without this, the errors Envoy produces itself would be plain text, and REST clients would need
two error parsers.
"""

from __future__ import annotations

from typing import Any

from google.rpc import code_pb2

# HTTP status of a local reply -> the google.rpc.Code a REST client should see. 413 has no
# canonical code; RESOURCE_EXHAUSTED is what gRPC itself uses for an oversized message.
_CODE_OF_HTTP_STATUS: dict[int, int] = {
    400: code_pb2.INVALID_ARGUMENT,
    401: code_pb2.UNAUTHENTICATED,
    403: code_pb2.PERMISSION_DENIED,
    404: code_pb2.NOT_FOUND,
    408: code_pb2.DEADLINE_EXCEEDED,
    413: code_pb2.RESOURCE_EXHAUSTED,
    # The gateway's answer to a gRPC path called with a content type no service speaks.
    415: code_pb2.INVALID_ARGUMENT,
    429: code_pb2.RESOURCE_EXHAUSTED,
    431: code_pb2.RESOURCE_EXHAUSTED,
    500: code_pb2.INTERNAL,
    502: code_pb2.UNAVAILABLE,
    503: code_pb2.UNAVAILABLE,
    504: code_pb2.DEADLINE_EXCEEDED,
}
NO_SUCH_ROUTE = "no such route"


def status_json(code: int, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "details": []}


def _header(key: str, value: str) -> dict[str, Any]:
    return {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}


# What gRPC clients send (Envoy makes its local replies to these trailers-only) and the gRPC-Web
# types the gRPC-Web filter understands. A caller sending anything else (`application/grpc-web+json`
# say) reads no gRPC status, so it gets the JSON body as a REST client does.
_GRPC_CONTENT_TYPES = r"application/grpc([+;].*)?|application/grpc-web(-text)?(\+proto)?(;.*)?"


def _is_rest() -> dict[str, Any]:
    """Matches REST calls; gRPC and gRPC-Web calls read a local reply from grpc-status and
    grpc-message, which Envoy sets itself (a JSON body would become their grpc-message).

    The request headers seen here are the current ones: once transcoded, a REST call carries a
    gRPC content-type too, but also the x-envoy-original-method the transcoder adds.
    """
    not_grpc_content = {
        "header_filter": {
            "header": {
                "name": "content-type",
                "string_match": {"safe_regex": {"regex": _GRPC_CONTENT_TYPES}},
                "invert_match": True,
                # A GET has no content-type at all, and is not gRPC either.
                "treat_missing_header_as_empty": True,
            }
        }
    }
    transcoded = {
        "header_filter": {"header": {"name": "x-envoy-original-method", "present_match": True}}
    }
    return {"or_filter": {"filters": [not_grpc_content, transcoded]}}


def _status_is(http_status: int) -> dict[str, Any]:
    return {
        "status_code_filter": {
            "comparison": {
                "op": "EQ",
                "value": {"default_value": http_status, "runtime_key": "r3mes.local_reply.unused"},
            }
        }
    }


def _mapper(http_status: int, code: int) -> dict[str, Any]:
    mapper: dict[str, Any] = {
        "filter": {"and_filter": {"filters": [_status_is(http_status), _is_rest()]}},
        "body_format_override": {
            "json_format": status_json(code, "%LOCAL_REPLY_BODY%"),
            "content_type": "application/json",
        },
        # Envoy's access log derives a gRPC status from a reply's grpc-status header, else from
        # its HTTP status by gRPC's own mapping (400 would be INTERNAL): the header makes the log
        # say the code the client actually received in the body.
        "headers_to_add": [_header("grpc-status", str(code))],
    }
    if http_status == 404:
        # Envoy's only 404 is the unknown-path route, whose own body is empty.
        mapper["body"] = {"inline_string": NO_SUCH_ROUTE}
    return mapper


# gRPC's own HTTP mapping would make these UNKNOWN (408, 413) or UNAVAILABLE (504, which says
# "retry now" where the call has simply run out of time). Envoy keeps a grpc-status it finds on a
# local reply, so gRPC and gRPC-Web callers get what a gRPC server would have said.
_GRPC_STATUS_OF_HTTP_STATUS: dict[int, tuple[int, str]] = {
    # A gRPC-Web client of an unknown service got a bare 404 (the unknown-path route's body is
    # empty, so the gRPC-Web filter gave it no status either), and the access log none to read.
    404: (code_pb2.UNIMPLEMENTED, "no such service"),
    408: (code_pb2.DEADLINE_EXCEEDED, "the request did not arrive in time"),
    413: (code_pb2.RESOURCE_EXHAUSTED, "the request is too large"),
    431: (code_pb2.RESOURCE_EXHAUSTED, "the request headers are too large"),
    504: (code_pb2.DEADLINE_EXCEEDED, "the call took longer than the gateway allows"),
}


def _grpc_mapper(http_status: int, code: int, message: str) -> dict[str, Any]:
    return {
        "filter": _status_is(http_status),
        # gRPC-Web calls are not gRPC to Envoy's local replies, and the gRPC-Web filter would
        # replace the status by gRPC's HTTP mapping unless the reply looks like gRPC already:
        # HTTP 200 and no body, status and message in the headers (a trailers-only reply).
        "status_code": 200,
        "body": {"inline_string": ""},
        "headers_to_add": [_header("grpc-status", str(code)), _header("grpc-message", message)],
    }


def local_reply_config() -> dict[str, Any]:
    """HttpConnectionManager.local_reply_config: one mapper per HTTP status Envoy may produce.

    Envoy applies the first mapper that matches, so the REST mappers come first.
    """
    rest = [_mapper(status, code) for status, code in _CODE_OF_HTTP_STATUS.items()]
    grpc = [_grpc_mapper(status, *reply) for status, reply in _GRPC_STATUS_OF_HTTP_STATUS.items()]
    return {"mappers": [*rest, *grpc]}
