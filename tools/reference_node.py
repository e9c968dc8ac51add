"""The reference serving node: a small OpenAI-compatible chat server, for tests and `make run`.

`python -m tools.reference_node --port 8090` serves `POST /v1/chat/completions` (streamed as
server-sent events ending with `data: [DONE]`, or whole) and `GET /v1/models`, like vLLM,
llama.cpp's server and Ollama do. Its answers are deterministic: token i of every answer is
`WORDS[i % len(WORDS)]` followed by a space, `--tokens` of them (fewer when the request's
`max_tokens` says so), one every `--delay` seconds. It reports usage (prompt tokens: the words
of the messages; completion tokens: those sent) in the last chunk, and can be told to fail:
`--fail-before-first-token` drops every connection before answering, `--fail-after N` drops it
after N tokens. Tests start it in-process (`ReferenceNode`) and change those knobs between calls.

Hand-written on asyncio and h11 (the HTTP/1.1 state machine httpx itself uses): a web framework
would be a dependency for two routes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import h11

WORDS = ("the", "network", "answers", "with", "tokens", "paid", "by", "wallets")
DEFAULT_MODEL = "r3mes-reference"
MAX_REQUEST_BYTES = 1 << 20


@dataclass
class ReferenceNode:
    """The server and its knobs; `port` is set once started."""

    host: str = "127.0.0.1"
    port: int = 0
    models: tuple[str, ...] = (DEFAULT_MODEL,)
    tokens: int = 16
    delay_seconds: float = 0.0
    fail_before_first_token: bool = False
    fail_after: int | None = None
    redirect_to: str | None = None  # answer chats with a 307 to this URL
    requests: int = 0
    _server: asyncio.Server | None = field(default=None, repr=False)
    _open: set[asyncio.StreamWriter] = field(default_factory=set, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connection, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stops listening and drops every open connection (a node that dies)."""
        if self._server is not None:
            self._server.close()
            for writer in self._open:
                writer.transport.abort()
            await self._server.wait_closed()
            self._server = None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = h11.Connection(h11.SERVER)
        self._open.add(writer)
        try:
            while True:
                request, body = await _read_request(connection, reader)
                if request is None:
                    return
                await self._answer(connection, writer, request, body)
                if connection.our_state is not h11.DONE:
                    return
                connection.start_next_cycle()
        except (ConnectionError, h11.ProtocolError, _Dropped):
            writer.transport.abort()
        finally:
            self._open.discard(writer)
            writer.close()

    async def _answer(
        self,
        connection: h11.Connection,
        writer: asyncio.StreamWriter,
        request: h11.Request,
        body: bytes,
    ) -> None:
        path = request.target.decode().split("?")[0]
        if request.method == b"GET" and path == "/v1/models":
            data = [{"id": m, "object": "model", "owned_by": "r3mes"} for m in self.models]
            await _send_json(connection, writer, 200, {"object": "list", "data": data})
            return
        if request.method != b"POST" or path != "/v1/chat/completions":
            await _send_json(connection, writer, 404, {"error": {"message": "not found"}})
            return
        self.requests += 1
        try:
            asked = json.loads(body)
            messages = asked["messages"]
            model = str(asked["model"])
        except (ValueError, KeyError, TypeError):
            await _send_json(connection, writer, 400, {"error": {"message": "bad request"}})
            return
        if model not in self.models:
            await _send_json(connection, writer, 404, {"error": {"message": "unknown model"}})
            return
        if self.fail_before_first_token:
            raise _Dropped
        if self.redirect_to is not None:
            location = [(b"location", self.redirect_to.encode()), (b"content-length", b"0")]
            await _send(writer, connection.send(h11.Response(status_code=307, headers=location)))
            await _send(writer, connection.send(h11.EndOfMessage()))
            return
        count = min(self.tokens, int(asked.get("max_tokens") or self.tokens))
        prompt = sum(len(str(m.get("content", "")).split()) for m in messages)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": count,
            "total_tokens": prompt + count,
        }
        finish = "length" if count < self.tokens else "stop"
        words = [WORDS[i % len(WORDS)] + " " for i in range(count)]
        ident, created = f"chatcmpl-ref{self.requests}", int(time.time())
        if not asked.get("stream"):
            await asyncio.sleep(self.delay_seconds * count)
            message = {"role": "assistant", "content": "".join(words)}
            answer = {
                "id": ident,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "usage": usage,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            }
            await _send_json(connection, writer, 200, answer)
            return
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await _send(writer, connection.send(h11.Response(status_code=200, headers=headers)))

        async def event(choices: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> None:
            chunk = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": choices,
                **(extra or {}),
            }
            data = f"data: {json.dumps(chunk)}\n\n".encode()
            await _send(writer, connection.send(h11.Data(data=data)))

        for index, word in enumerate(words):
            if self.fail_after is not None and index >= self.fail_after:
                raise _Dropped
            await asyncio.sleep(self.delay_seconds)
            await event([{"index": 0, "delta": {"content": word}, "finish_reason": None}])
        await event([{"index": 0, "delta": {}, "finish_reason": finish}])
        if (asked.get("stream_options") or {}).get("include_usage"):
            await event([], {"usage": usage})
        await _send(writer, connection.send(h11.Data(data=b"data: [DONE]\n\n")))
        await _send(writer, connection.send(h11.EndOfMessage()))


class _Dropped(Exception):
    """The node is told to fail: the connection is cut."""


async def _read_request(
    connection: h11.Connection, reader: asyncio.StreamReader
) -> tuple[h11.Request | None, bytes]:
    request: h11.Request | None = None
    body = b""
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(65536)
            connection.receive_data(data)
            if not data and request is None:
                return None, b""
            continue
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_REQUEST_BYTES:
                raise _Dropped
        elif isinstance(event, h11.EndOfMessage):
            return request, body
        elif isinstance(event, h11.ConnectionClosed):
            return None, b""


async def _send(writer: asyncio.StreamWriter, data: bytes | None) -> None:
    if data:
        writer.write(data)
        await writer.drain()


async def _send_json(
    connection: h11.Connection, writer: asyncio.StreamWriter, status: int, value: object
) -> None:
    body = json.dumps(value).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await _send(writer, connection.send(h11.Response(status_code=status, headers=headers)))
    await _send(writer, connection.send(h11.Data(data=body)))
    await _send(writer, connection.send(h11.EndOfMessage()))


async def _serve(node: ReferenceNode) -> None:
    await node.start()
    print(f"reference node serving {', '.join(node.models)} at {node.url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await node.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--model", action="append", help=f"model served (default {DEFAULT_MODEL})")
    parser.add_argument("--tokens", type=int, default=16, help="tokens of each full answer")
    parser.add_argument("--delay", type=float, default=0.02, help="seconds before each token")
    parser.add_argument("--fail-before-first-token", action="store_true")
    parser.add_argument("--fail-after", type=int, default=None, help="drop after N tokens")
    arguments = parser.parse_args()
    node = ReferenceNode(
        host=arguments.host,
        port=arguments.port,
        models=tuple(arguments.model or (DEFAULT_MODEL,)),
        tokens=arguments.tokens,
        delay_seconds=arguments.delay,
        fail_before_first_token=arguments.fail_before_first_token,
        fail_after=arguments.fail_after,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(node))


if __name__ == "__main__":
    main()
