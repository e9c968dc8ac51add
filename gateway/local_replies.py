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
                "string_match": {"prefix": "application/grpc"},
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
    }
    if http_status == 404:
        # Envoy's only 404 is the unknown-path route, whose own body is empty.
        mapper["body"] = {"inline_string": NO_SUCH_ROUTE}
    return mapper


def _grpc_body_too_large() -> dict[str, Any]:
    # gRPC's own HTTP mapping turns 413 into UNKNOWN; RESOURCE_EXHAUSTED is what a gRPC server
    # says for an oversized message, so gRPC clients get that (Envoy keeps a grpc-status it
    # finds on a local reply).
    return {
        "filter": _status_is(413),
        "headers_to_add": [
            {
                "header": {"key": "grpc-status", "value": str(code_pb2.RESOURCE_EXHAUSTED)},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        ],
    }


def local_reply_config() -> dict[str, Any]:
    """HttpConnectionManager.local_reply_config: one mapper per HTTP status Envoy may produce.

    Envoy applies the first mapper that matches, so the REST mappers come first.
    """
    rest = [_mapper(status, code) for status, code in _CODE_OF_HTTP_STATUS.items()]
    return {"mappers": [*rest, _grpc_body_too_large()]}
