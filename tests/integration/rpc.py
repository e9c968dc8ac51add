"""Reading the google.rpc.Status a failed call carries, as a client in any language would."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


@dataclass(frozen=True)
class RpcFailure:
    code: grpc.StatusCode
    message: str
    reason: str
    domain: str
    bad_fields: dict[str, str]


def failure_of(error: grpc.aio.AioRpcError) -> RpcFailure:
    status = rpc_status.from_call(error)
    assert status is not None, "the error carries no google.rpc.Status"
    reason = domain = ""
    bad_fields: dict[str, str] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, domain = info.reason, info.domain
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            bad_fields = {v.field: v.description for v in bad_request.field_violations}
    return RpcFailure(error.code(), status.message, reason, domain, bad_fields)


async def reply_headers(call: grpc.aio.Call) -> dict[str, str]:
    """Every text header a gRPC caller got with its reply, wherever it came: a unary reply
    carries its rate-limit headers among its trailers, a stream among its initial metadata."""
    pairs = (*(await call.initial_metadata() or ()), *(await call.trailing_metadata() or ()))
    return {name: value for name, value in pairs if isinstance(value, str)}


def error_headers(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """`reply_headers` of a call that failed, as the client library raised it."""
    pairs = (*(error.initial_metadata() or ()), *(error.trailing_metadata() or ()))
    return {name: value for name, value in pairs if isinstance(value, str)}
