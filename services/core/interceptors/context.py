"""Outermost interceptor: request id, client address, deadline check and the access log."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

import grpc

from services.core.interceptors.base import Call, Interceptor
from services.core.logging import REQUEST_ID_HEADER, request_id_var
from services.core.network import (
    FORWARDED_FOR_HEADER,
    IPNetwork,
    client_address,
    client_address_var,
)

MAX_REQUEST_ID_LENGTH = 128
INFRASTRUCTURE_PREFIX = "/grpc."

access_log = logging.getLogger("r3mes.access")


class RequestContextInterceptor(Interceptor):
    def __init__(self, trusted_proxies: Sequence[IPNetwork]) -> None:
        self._trusted_proxies = tuple(trusted_proxies)

    async def around(self, call: Call) -> Any:
        context = call.context
        request_id = _request_id(call)
        token = request_id_var.set(request_id)
        forwarded_for = call.metadata().get(FORWARDED_FOR_HEADER)
        client = client_address(context.peer(), forwarded_for, self._trusted_proxies)
        client_token = client_address_var.set(client)
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            if _deadline_passed(context):
                await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline had passed")
            await context.send_initial_metadata(((REQUEST_ID_HEADER, request_id),))
            return await call.proceed()
        except asyncio.CancelledError:
            # grpc cancels the handler when the deadline passes or the client goes away.
            passed = _deadline_passed(context)
            code = grpc.StatusCode.DEADLINE_EXCEEDED if passed else grpc.StatusCode.CANCELLED
            raise
        except BaseException:
            code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        finally:
            access_log.log(
                # Health checks arrive every few seconds from every balancer: keep them quiet.
                logging.DEBUG
                if call.method_name.startswith(INFRASTRUCTURE_PREFIX)
                else logging.INFO,
                "rpc",
                extra={
                    "method": call.method_name,
                    "client": client,
                    "code": _code_name(code),
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                },
            )
            request_id_var.reset(token)
            client_address_var.reset(client_token)


def _deadline_passed(context: grpc.aio.ServicerContext[Any, Any]) -> bool:
    remaining = context.time_remaining()
    return remaining is not None and remaining <= 0


def _request_id(call: Call) -> str:
    offered = call.metadata().get(REQUEST_ID_HEADER)
    if (
        isinstance(offered, str)
        and 0 < len(offered) <= MAX_REQUEST_ID_LENGTH
        and offered.isprintable()
    ):
        return offered
    return uuid.uuid4().hex


def _code_name(code: grpc.StatusCode | int) -> str:
    # After abort() grpc reports the code as a plain int on some paths.
    if isinstance(code, grpc.StatusCode):
        return code.name
    return next((c.name for c in grpc.StatusCode if c.value[0] == code), str(code))
