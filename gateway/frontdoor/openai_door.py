"""The OpenAI-compatible door: `POST /v1/chat/completions` and `GET /v1/models` on the gateway's
port, for the `openai` packages, curl and every tool that speaks OpenAI's wire format.

Envoy's JSON transcoder cannot speak it (one path answering whole or as server-sent events by a
body field, `data: [DONE]`), so the front door translates: each request becomes one call of the
serving service (StreamChatCompletion, CreateChatCompletion, ListServingNodes, ListLoRAs) on the
caller's own credential (the `authorization: Bearer r3mes_...` header passed on as it came), so
the chat is charged to the key's wallet, and every rule (validation, rate limits, own wallet)
stays the service's. Each chunk is written to the client as soon as it arrives.

Errors are OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with an HTTP status
from the gRPC code (docs/api.md, "OpenAI-compatible door", has the table).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from r3mes.serving.v1 import serving_pb2, serving_pb2_grpc

from gateway.frontdoor import metrics
from gateway.frontdoor.chat_service import chat_service
from services.core.network import GATEWAY_SECRET_HEADER
from services.core.registry import target_of
from services.core.settings import Settings

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
DOOR_METHODS = {CHAT_PATH: "POST", MODELS_PATH: "GET"}
# Headers passed on to the service: the caller's credential, and the request id Envoy set, so
# the service's log line and the gateway's name the same call.
PASSED_ON = ("authorization", "x-api-key", "x-request-id")
# Registered adapters change rarely (operators add them): read again at most this often.
ADAPTERS_MAX_AGE_SECONDS = 10.0
# Pages of ListServingNodes read for /v1/models: 100 nodes each, so 2,000 fresh nodes at most.
MAX_NODE_PAGES = 20
LISTING_TIMEOUT_SECONDS = 5.0
_INT32_MAX = 2**31 - 1
_FINISH = {
    serving_pb2.FINISH_REASON_STOP: "stop",
    serving_pb2.FINISH_REASON_LENGTH: "length",
    # OpenRouter's name for an answer cut short by its provider; what arrived is charged.
    serving_pb2.FINISH_REASON_NODE_FAILURE: "error",
}
# gRPC code -> HTTP status and OpenAI error type. 402 for a wallet short of credits, as
# OpenRouter answers: OpenAI's own 429 `insufficient_quota` would make its clients retry a call
# that cannot succeed before the wallet is topped up, and mix it up with rate limits.
_HTTP_OF_CODE: dict[grpc.StatusCode, tuple[int, str]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_request_error"),
    grpc.StatusCode.FAILED_PRECONDITION: (400, "invalid_request_error"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "invalid_request_error"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "authentication_error"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "permission_error"),
    grpc.StatusCode.NOT_FOUND: (404, "invalid_request_error"),
    grpc.StatusCode.ALREADY_EXISTS: (409, "invalid_request_error"),
    grpc.StatusCode.ABORTED: (409, "conflict_error"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "rate_limit_error"),
    grpc.StatusCode.CANCELLED: (499, "request_cancelled"),
    grpc.StatusCode.UNIMPLEMENTED: (501, "server_error"),
    grpc.StatusCode.UNAVAILABLE: (503, "server_error"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "timeout_error"),
}
_INSUFFICIENT_CREDITS = "INSUFFICIENT_CREDITS"
# The codes OpenAI's clients know by name; any other reason is sent lowercased.
_OPENAI_CODES = {"API_KEY_INVALID": "invalid_api_key", "MODEL_NOT_SERVED": "model_not_found"}


Metadata = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class DoorError(Exception):
    """A refusal in OpenAI's shape."""

    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        error = {"message": self.message, "type": self.type, "param": self.param}
        return {"error": {**error, "code": self.code}}


def wrong_method(path: str, method: str) -> DoorError:
    allowed = DOOR_METHODS[path]
    message = f"{path} takes {allowed}, not {method}"
    return DoorError(405, message, code="method_not_allowed", headers={"allow": allowed})


def _invalid(param: str, message: str) -> DoorError:
    return DoorError(400, message, param=param, code="invalid_value")


def error_of_rpc(error: grpc.RpcError) -> DoorError:
    """The service's google.rpc.Status as OpenAI's error: reason as code, first bad field as
    param, RetryInfo as retry-after."""
    assert isinstance(error, grpc.Call)
    code = error.code()
    status, kind = _HTTP_OF_CODE.get(code, (500, "server_error"))
    reason, param, headers = None, None, {}
    rich = rpc_status.from_call(error)
    for detail in rich.details if rich is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            param = param or (bad.field_violations[0].field if bad.field_violations else None)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            headers["retry-after"] = str(max(1, retry.retry_delay.seconds))
    if reason == _INSUFFICIENT_CREDITS:
        status, kind = 402, "insufficient_quota"
    if reason == "MODEL_NOT_SERVED":
        param = "model"
    openai_code = _OPENAI_CODES.get(reason, reason.lower()) if reason else code.name.lower()
    return DoorError(status, error.details() or code.name, kind, param, openai_code, headers)


@dataclass(frozen=True)
class ChatAsk:
    """A chat request as OpenAI's clients send it, checked for what the door itself needs."""

    model: str
    messages: list[tuple[str, str]]
    max_tokens: int
    stream: bool
    include_usage: bool


def _content(value: object, where: str) -> str:
    """A message's content: a string, or OpenAI's list of text parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        for p in value
    ):
        return "".join(str(p["text"]) for p in value)
    raise _invalid(where, f"{where} must be a string or a list of text parts")


def _messages(value: object) -> list[tuple[str, str]]:
    if not isinstance(value, list) or not value:
        raise _invalid("messages", "messages must be a non-empty list of messages")
    messages = []
    for index, message in enumerate(value):
        where = f"messages.{index}"
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise _invalid(where, f"{where} must be an object with a string role")
        messages.append((message["role"], _content(message.get("content", ""), f"{where}.content")))
    return messages


def _flag(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _invalid(name, f"{name} must be true or false")
    return value


def _not_json(constant: str) -> None:
    # Python's json reads NaN and Infinity, which JSON (RFC 8259) has not: refused as any
    # other body that is not JSON, before a field can carry one on.
    raise ValueError(f"{constant} is not JSON")


def parse_chat(raw: bytes) -> ChatAsk:
    try:
        body = json.loads(raw, parse_constant=_not_json)
    except (ValueError, UnicodeDecodeError):
        raise DoorError(400, "the body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise DoorError(400, "the body must be a JSON object", code="invalid_json")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("model", "model must be a non-empty string")
    # max_completion_tokens is the newer name; both are accepted, as OpenAI does.
    name = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    max_tokens = body.get(name)
    if max_tokens is None:
        max_tokens = 0  # the service's default
    # The service judges the bound (1..4096); the door only keeps the value in its int32 field.
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise _invalid(name, f"{name} must be an integer")
    if not 0 <= max_tokens <= _INT32_MAX:
        raise _invalid(name, f"{name} must be between 1 and 4096")
    if body.get("n", 1) != 1:
        raise _invalid("n", "n must be 1: one answer per request")
    options = body.get("stream_options")
    options = {} if options is None else options
    if not isinstance(options, dict):
        raise _invalid("stream_options", "stream_options must be an object")
    return ChatAsk(
        model=model,
        messages=_messages(body.get("messages")),
        max_tokens=max_tokens,
        stream=_flag(body, "stream"),
        include_usage=_flag(options, "include_usage"),
    )


def _usage(usage: serving_pb2.Usage, charge: serving_pb2.Charge) -> dict[str, int]:
    # What left the wallet, beside OpenAI's counts (OpenRouter's usage carries its cost too).
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "charged_micro_credits": charge.charged_micro_credits,
    }


def _event(value: object) -> bytes:
    return b"data: " + json.dumps(value, separators=(",", ":")).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


class ChatStream:
    """An answer being streamed: the first piece (or the end) has already arrived, so a refusal
    is an HTTP error, never a broken stream. Iterate for the server-sent events; `cancel` when
    the client has gone (the service then charges only what it handed over)."""

    def __init__(
        self,
        call: Any,
        first: list[serving_pb2.StreamChatCompletionResponse],
        ask: ChatAsk,
    ) -> None:
        self._call = call
        self._first = first
        self._ask = ask

    def cancel(self) -> None:
        self._call.cancel()

    def _chunk(self, chunk: serving_pb2.StreamChatCompletionResponse, **fields: Any) -> bytes:
        event = {
            "id": chunk.id,
            "object": "chat.completion.chunk",
            "created": chunk.create_time.seconds,
            "model": self._ask.model,
            **fields,
        }
        if self._ask.include_usage and "usage" not in event:
            event["usage"] = None  # as OpenAI sends it in every chunk but the last
        return _event(event)

    def __iter__(self) -> Iterator[bytes]:
        role: dict[str, str] = {"role": "assistant"}
        try:
            for chunk in itertools.chain(self._first, self._call):
                if chunk.delta:
                    choice = {"index": 0, "delta": {**role, "content": chunk.delta}}
                    role = {}
                    yield self._chunk(chunk, choices=[{**choice, "finish_reason": None}])
                elif chunk.finish_reason:
                    finish = _FINISH[chunk.finish_reason]
                    choice = {"index": 0, "delta": role, "finish_reason": finish}
                    metrics.chat_charged(chunk.usage, chunk.charge)
                    yield self._chunk(chunk, choices=[choice])
                    if self._ask.include_usage:
                        usage = _usage(chunk.usage, chunk.charge)
                        yield self._chunk(chunk, choices=[], usage=usage)
        except grpc.RpcError as error:
            # Mid-answer: the status is sent; OpenAI's clients raise on an `error` event.
            yield _event(error_of_rpc(error).body())
            return
        yield DONE


class OpenAIDoor:
    """One channel to serving, shared by the front door's threads."""

    def __init__(self, settings: Settings) -> None:
        self._channel = grpc.insecure_channel(target_of(settings, chat_service().name))
        self._serving = serving_pb2_grpc.ServingServiceStub(self._channel)
        self._gateway_secret = settings.gateway_secret_value()
        self._adapters: dict[str, serving_pb2.LoRA] = {}
        self._adapters_time = float("-inf")
        self._lock = threading.Lock()

    def close(self) -> None:
        self._channel.close()

    def _metadata(self, headers: Mapping[str, str]) -> Metadata:
        metadata: list[tuple[str, str]] = []
        for name in PASSED_ON:
            value = headers.get(name)
            if value is not None:
                if not value.isascii() or not value.isprintable():
                    raise DoorError(
                        401,
                        "the API key is not valid",
                        "authentication_error",
                        code="invalid_api_key",
                    )
                metadata.append((name, value))
        # The client address Envoy determined, vouched for as Envoy does, so that per-address
        # rate limits see the caller rather than the front door.
        client = headers.get("x-forwarded-for")
        if self._gateway_secret is not None and client is not None:
            metadata += [("x-forwarded-for", client), (GATEWAY_SECRET_HEADER, self._gateway_secret)]
        return tuple(metadata)

    def _registered_adapters(self, metadata: Metadata) -> dict[str, serving_pb2.LoRA]:
        with self._lock:
            if time.monotonic() - self._adapters_time < ADAPTERS_MAX_AGE_SECONDS:
                return self._adapters
        adapters: dict[str, serving_pb2.LoRA] = {}
        token = ""
        for _ in range(MAX_NODE_PAGES):
            page = self._serving.ListLoRAs(
                serving_pb2.ListLoRAsRequest(page_size=100, page_token=token),
                metadata=metadata,
                timeout=LISTING_TIMEOUT_SECONDS,
            )
            adapters.update((lora.name, lora) for lora in page.loras)
            token = page.next_page_token
            if not token:
                break
        with self._lock:
            self._adapters, self._adapters_time = adapters, time.monotonic()
        return adapters

    def _fresh_nodes(self, metadata: Metadata) -> list[serving_pb2.ServingNode]:
        nodes: list[serving_pb2.ServingNode] = []
        token = ""
        for _ in range(MAX_NODE_PAGES):
            page = self._serving.ListServingNodes(
                serving_pb2.ListServingNodesRequest(
                    fresh_only=True, page_size=100, page_token=token
                ),
                metadata=metadata,
                timeout=LISTING_TIMEOUT_SECONDS,
            )
            nodes += page.nodes
            token = page.next_page_token
            if not token:
                break
        return nodes

    def models(self, headers: Mapping[str, str]) -> dict[str, Any]:
        """The models and adapters a fresh node serves now; an adapter names its base model as
        `parent`, as vLLM lists them."""
        metadata = self._metadata(headers)
        try:
            nodes = self._fresh_nodes(metadata)
            adapters = (
                self._registered_adapters(metadata) if any(n.lora_adapters for n in nodes) else {}
            )
        except grpc.RpcError as error:
            raise error_of_rpc(error) from None
        since: dict[str, int] = {}
        parents: dict[str, str] = {}
        for node in nodes:
            for name in node.models:
                since[name] = min(
                    since.get(name, node.create_time.seconds), node.create_time.seconds
                )
            for name in node.lora_adapters:
                since.setdefault(name, node.create_time.seconds)
                if name in adapters:
                    parents[name] = adapters[name].base_model
        data = []
        for name in sorted(since):
            model = {"id": name, "object": "model", "created": since[name], "owned_by": "r3mes"}
            if name in parents:
                model["parent"] = parents[name]
            data.append(model)
        return {"object": "list", "data": data}

    def _request(self, ask: ChatAsk, metadata: Metadata) -> dict[str, Any]:
        # A registered adapter's name is asked for as the model, as vLLM selects adapters.
        adapter = self._registered_adapters(metadata).get(ask.model)
        return {
            "model": adapter.base_model if adapter else ask.model,
            "lora_adapter": adapter.name if adapter else "",
            "messages": [serving_pb2.ChatMessage(role=r, content=c) for r, c in ask.messages],
            "max_tokens": ask.max_tokens,
        }

    def complete(self, ask: ChatAsk, headers: Mapping[str, str]) -> dict[str, Any]:
        metadata = self._metadata(headers)
        try:
            request = serving_pb2.CreateChatCompletionRequest(**self._request(ask, metadata))
            answer = self._serving.CreateChatCompletion(request, metadata=metadata)
        except grpc.RpcError as error:
            raise error_of_rpc(error) from None
        metrics.chat_charged(answer.usage, answer.charge)
        message = {"role": "assistant", "content": answer.content}
        choice = {"index": 0, "message": message, "logprobs": None}
        return {
            "id": answer.id,
            "object": "chat.completion",
            "created": answer.create_time.seconds,
            "model": ask.model,
            "choices": [{**choice, "finish_reason": _FINISH[answer.finish_reason]}],
            "usage": _usage(answer.usage, answer.charge),
        }

    def stream(self, ask: ChatAsk, headers: Mapping[str, str]) -> ChatStream:
        """Starts the chat and waits for its first piece (or its end), so that a refusal (no
        credits, no node) is still an HTTP status."""
        metadata = self._metadata(headers)
        call: Any = None
        first: list[serving_pb2.StreamChatCompletionResponse] = []
        try:
            request = serving_pb2.StreamChatCompletionRequest(**self._request(ask, metadata))
            call = self._serving.StreamChatCompletion(request, metadata=metadata)
            for chunk in call:
                first.append(chunk)
                if chunk.delta or chunk.finish_reason:
                    break
        except grpc.RpcError as error:
            raise error_of_rpc(error) from None
        return ChatStream(call, first, ask)
