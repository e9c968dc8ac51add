"""The interceptor chain as one grpc-interceptor server interceptor running its steps in order.

Stacked interceptors cost, per layer and per call, a handler rebuilt by grpc-interceptor, a
coroutine frame and a scan of the metadata; one interceptor calling small steps pays each once
(docs/performance.md has the figures). The steps, outermost first (ARCHITECTURE section 7):

1. request context (`context`): request id, trace context and the call's span, client
   address, the access log line; admission (`admission`): refused while the server drains;
   the deadline check
2. error mapping (`errors`): whatever a later step or the handler raises becomes a Status
3. authentication (`authentication`): the principal; failures counted per client address
4. validation (`validation`, `parsing`): the message parses and obeys its proto annotations
5. rate limiting (`ratelimit`): per wallet and per client address, per method policy
6. authorization (`authorization`): the RPC's declared access rule

Streaming handlers (reflection, health Watch) go through the same steps: the ones before the
handler run before its first message, and errors raised while its messages are produced are
mapped too.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import suppress
from contextvars import ContextVar
from functools import partial
from typing import Any, TypeAlias

import grpc
from grpc_interceptor.server import AsyncServerInterceptor

from services.core.auth import AuthenticationFailures, Authenticator, current_principal
from services.core.interceptors import context as request_context
from services.core.interceptors.admission import Admission
from services.core.interceptors.authentication import Authentication
from services.core.interceptors.authorization import authorize_call
from services.core.interceptors.context import CallRecord
from services.core.interceptors.errors import (
    TRANSCODED_HEADER,
    ErrorDomains,
    ErrorMapping,
    refuse,
)
from services.core.interceptors.parsing import checked, tolerant
from services.core.interceptors.ratelimit import Headers, RateLimited, RateLimiting
from services.core.interceptors.validation import validate
from services.core.logging import REQUEST_ID_HEADER
from services.core.metrics import CallMetrics
from services.core.network import IPNetwork

Context = grpc.aio.ServicerContext[Any, Any]
Behaviour = Callable[..., Any]
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Metadata = dict[str, str]
_call_metadata: ContextVar[Sequence[tuple[str, str | bytes]]] = ContextVar("call_metadata")
Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]"


class RequestChain(AsyncServerInterceptor):
    def __init__(
        self,
        error_domain: ErrorDomains | str,
        authenticators: Sequence[Authenticator],
        trusted_proxies: Sequence[IPNetwork] = (),
        admission: Admission | None = None,
        rate_limiting: RateLimiting | None = None,
        gateway_secret: str | None = None,
        failed_authentications: AuthenticationFailures | None = None,
        metrics: bool = False,
    ) -> None:
        self._errors = ErrorMapping(error_domain)
        self._authentication = Authentication(authenticators, failed_authentications)
        self._clients = request_context.ClientAddresses(trusted_proxies, gateway_secret)
        self.admission = admission or Admission()
        self._rate_limiting = rate_limiting
        self._metrics = metrics
        # grpc asks for the handler on every call; the wrapped one is built once per method.
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        # Overridden, not left to grpc-interceptor: its own version builds a new wrapped
        # handler on every call and has `intercept` read the metadata again; this one wraps
        # each method once (its `intercept` still runs every unary call) and hands the
        # metadata grpc already built to the steps.
        handler = await continuation(handler_call_details)
        if handler is None:  # no such method: grpc answers UNIMPLEMENTED
            return None
        # grpc has just built the call's metadata for us; `context.invocation_metadata()`
        # would build it again, tuple by tuple. This runs in the call's own task, as the
        # handler does, so the context variable reaches the handler and no other call.
        _call_metadata.set(handler_call_details.invocation_metadata)
        method_name = handler_call_details.method
        cached = self._wrapped.get(method_name)
        if cached is None or cached[0] is not handler:
            cached = (handler, self._wrap(handler, method_name))
            self._wrapped[method_name] = cached
        return cached[1]

    def _wrap(self, handler: Handler, method_name: str) -> Handler:
        factory: Callable[..., Handler]
        behaviour: Any
        if handler.unary_unary:
            factory, behaviour = grpc.unary_unary_rpc_method_handler, handler.unary_unary
            kind = "unary"
        elif handler.unary_stream:
            factory, behaviour = grpc.unary_stream_rpc_method_handler, handler.unary_stream
            kind = "server_stream"
        elif handler.stream_unary:
            factory, behaviour = grpc.stream_unary_rpc_method_handler, handler.stream_unary
            kind = "client_stream"
        else:
            factory, behaviour = grpc.stream_stream_rpc_method_handler, handler.stream_stream
            kind = "bidi_stream"
        run = self._streaming if handler.response_streaming else self.intercept
        metrics = CallMetrics(method_name, kind) if self._metrics else None
        # partial() of a coroutine (or async generator) function still reads as one to grpc.
        return factory(
            partial(run, behaviour, method_name=method_name, metrics=metrics),
            request_deserializer=tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )

    async def intercept(
        self,
        method: Behaviour,
        request_or_iterator: Any,
        context: Context,
        method_name: str,
        metrics: CallMetrics | None = None,
    ) -> Any:
        """A call with one response: the steps, then the handler, then the access log."""
        record, metadata = self._begin(method_name, context, metrics)
        admitted = False
        headers: Headers = ()
        try:
            self.admission.enter(method_name)
            admitted = True
            request, headers = await self._before_handler(
                method_name, metadata, request_or_iterator, context
            )
            response = await method(request, context)
            if self._rate_limiting is not None:
                await self._rate_limiting.charge_tokens(method_name, response)
            headers = await _reply_headers(context, headers, metadata)
            return response
        except asyncio.CancelledError:
            record.code = request_context.cancelled_code(context)
            raise
        except grpc.aio.AbortError:  # the handler aborted the call itself
            record.code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        except Exception as error:
            await self._refuse(context, error, method_name, record, metadata, headers)
            return None
        finally:
            if admitted:
                self.admission.leave()
            _end(record, context, metrics)

    async def _streaming(
        self,
        method: Behaviour,
        request_or_iterator: Any,
        context: Context,
        method_name: str,
        metrics: CallMetrics | None = None,
    ) -> AsyncIterator[Any]:
        """A call with a stream of responses. It is not counted as running: streams such as
        health Watch stay open until the client leaves, and would hold every shutdown."""
        record, metadata = self._begin(method_name, context, metrics)
        headers: Headers = ()
        try:
            self.admission.enter(method_name)
            self.admission.leave()
            request, headers = await self._before_handler(
                method_name, metadata, request_or_iterator, context
            )
            responses = method(request, context)
            if inspect.isawaitable(responses):  # the reader/writer API: it writes, returns None
                headers = await _send_headers(context, headers)
                await responses
            else:
                async for response in responses:
                    headers = await _send_headers(context, headers)
                    yield response
                    if self._rate_limiting is not None:
                        await self._rate_limiting.charge_tokens(method_name, response)
                headers = await _send_headers(context, headers)
        except asyncio.CancelledError:
            record.code = request_context.cancelled_code(context)
            raise
        except grpc.aio.AbortError:
            record.code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        except Exception as error:
            await self._refuse(context, error, method_name, record, metadata, headers)
        finally:
            _end(record, context, metrics)

    def _begin(
        self, method_name: str, context: Context, metrics: CallMetrics | None
    ) -> tuple[CallRecord, Metadata]:
        pairs = _call_metadata.get(None) or context.invocation_metadata() or ()
        # Text metadata only (binary `-bin` headers left out), read once for every step.
        metadata = {k: v for k, v in pairs if isinstance(v, str)}
        record = request_context.begin(method_name, metadata, context.peer(), self._clients)
        # In the trailers, which leave with the status in one batch: sending it as initial
        # metadata cost a batch of its own, the dearest single step of a refused call.
        context.set_trailing_metadata(((REQUEST_ID_HEADER, record.request_id),))
        if metrics is not None:
            metrics.started()
        return record, metadata

    async def _before_handler(
        self, method_name: str, metadata: Metadata, request: Any, context: Context
    ) -> tuple[Any, Headers]:
        """Steps 1 (deadline) and 3 to 6; raises to refuse the call. With the request, the
        headers its response carries (the rate limiter's), sent with the answer."""
        request_context.check_deadline(context)
        principal = await self._authentication.principal(metadata)
        current_principal.set(principal)
        message = None
        if isinstance(request, AsyncIterator):
            # A client stream: each message is checked for parsing as the handler reads it;
            # an access rule that names a request field then refuses (no message to read it in).
            request = checked(request)
        else:
            validate(request)
            message = request
        # After validation (a malformed call costs no quota), before authorization (a caller
        # probing for forbidden methods is limited too).
        headers: Headers = ()
        if self._rate_limiting is not None:
            headers = await self._rate_limiting.check(method_name, principal)
        authorize_call(method_name, principal, message)
        return request, headers

    async def _refuse(
        self,
        context: Context,
        error: Exception,
        method_name: str,
        record: CallRecord,
        metadata: Metadata,
        headers: Headers,
    ) -> None:
        """End the call with the status `error` maps to (grpc's AbortError leaves from here),
        carrying `headers` (those of the call's admission not sent yet, or a refusal's own)."""
        status = self._errors.status_of(error, method_name)
        record.code = status.code
        request_context.end_call(record)
        if isinstance(error, RateLimited):
            headers = error.headers
        await refuse(context, status, headers=headers, headers_first=TRANSCODED_HEADER in metadata)


async def _reply_headers(context: Context, headers: Headers, metadata: Metadata) -> Headers:
    """Give a unary reply its headers; what is left to send: nothing.

    A gRPC caller's go in the trailers: grpc then sends headers, message and status in one
    batch. Headers sent in a batch of their own commit the call, and a replica killed before
    the next batch leaves its caller a reset stream (INTERNAL through Envoy) that no retry
    policy retries. A REST caller's must be headers (the transcoder passes on only grpc-status
    and grpc-message of the trailers), and are safe there: the transcoder holds a unary
    reply's headers until the reply is complete, so a reply cut short is still Envoy's 503."""
    if TRANSCODED_HEADER in metadata:
        return await _send_headers(context, headers)
    if headers:
        context.set_trailing_metadata((*context.trailing_metadata(), *headers))
    return ()


async def _send_headers(context: Context, headers: Headers) -> Headers:
    """Send the call's own headers ahead of its first message or its status; what is left to
    send: nothing. A handler that sent headers of its own keeps them."""
    if headers:
        with suppress(grpc.aio.UsageError):
            await context.send_initial_metadata(headers)
    return ()


def _end(record: CallRecord, context: Context, metrics: CallMetrics | None) -> None:
    """The call's status is known: its access log line, its span and its series."""
    if record.code is grpc.StatusCode.OK:
        record.code = context.code() or grpc.StatusCode.OK
    request_context.end_call(record)
    if metrics is not None:
        metrics.handled(request_context.code_name(record.code), record.elapsed())
