"""Talking to serving nodes: their endpoints checked against SSRF, and their streamed answers.

Every connection resolves the node's host itself, checks every address it gets
(services.core.validators.check_resolved_addresses) and connects to the first checked address,
sending the host name only as the Host header and the TLS server name. The HTTP client never
resolves anything, so a name re-pointed at a private address after registration (DNS
rebinding) reaches nothing unchecked. Redirects are not followed and proxies from the
environment are not used: either would send the request somewhere that was never checked.

The answer is the OpenAI chat completions stream (server-sent events, `data: {...}` lines ending
with `data: [DONE]`), which vLLM, llama.cpp's server and Ollama all send. Its lines are read
here (a dozen lines): the protocol uses nothing of SSE beyond `data:` lines.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from services.core import validators
from services.core.tls import client_context
from services.core.validators import InvalidValue, IPNetwork, OutboundUrl
from services.serving.domain import Message, Usage

SCHEMES = frozenset({"http", "https"})
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for `host`."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return []
    return [str(info[4][0]) for info in infos]


class NodeFailed(Exception):
    """The node could not be reached or did not answer as the protocol says."""


@dataclass(frozen=True)
class Token:
    text: str


@dataclass(frozen=True)
class Finished:
    reason: str  # "stop" or "length", as the node said
    usage: Usage | None


NodeEvent = Token | Finished


@dataclass(frozen=True)
class Pinned:
    """Where to connect (a checked address) and the name to present there."""

    url: str
    host_header: str
    server_name: str | None


class Endpoints:
    """The SSRF rules of node endpoints, as the operator set them."""

    def __init__(
        self,
        ports: Sequence[int],
        trusted_networks: Sequence[str],
        resolver: Resolver | None = None,
    ) -> None:
        self._ports = frozenset(ports)
        self._trusted: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(cidr, strict=False) for cidr in trusted_networks
        )
        self.resolver = resolver

    def parse(self, url: str) -> OutboundUrl:
        """The URL's syntax and literal hosts (raises InvalidValue)."""
        return validators.parse_outbound_url(
            url,
            allowed_schemes=SCHEMES,
            allowed_ports=self._ports,
            trusted_networks=self._trusted,
        )

    async def pin(self, url: str) -> Pinned:
        """Check `url` now (raises InvalidValue) and say where to connect."""
        checked = self.parse(url)
        if checked.address is not None:
            address = checked.address
        else:
            # Looked up per call, so a test can answer for a name that has no real address.
            resolve = self.resolver or resolve_host
            resolved = await resolve(checked.host, checked.port)
            address = validators.check_resolved_addresses(resolved)[0]
        host = f"[{address}]" if address.version == 6 else str(address)
        base = checked.path.rstrip("/")
        return Pinned(
            url=f"{checked.scheme}://{host}:{checked.port}{base}/chat/completions",
            host_header=checked.authority,
            server_name=checked.host
            if checked.scheme == "https" and checked.address is None
            else None,
        )

    async def canonical(self, url: str) -> str:
        """The URL to store: checked as a connection would be, in its canonical spelling."""
        await self.pin(url)
        return self.parse(url).url


class NodeClient:
    """Streams chat completions from nodes, over one pooled HTTP client."""

    def __init__(self, endpoints: Endpoints, timeout_seconds: float) -> None:
        self._endpoints = endpoints
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_seconds),
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=100),
            verify=client_context(),
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def stream(
        self, endpoint_url: str, model: str, messages: list[Message], max_tokens: int
    ) -> AsyncIterator[NodeEvent]:
        """The node's answer as tokens and one Finished; raises NodeFailed. A stream that ends
        without `[DONE]` or a finish reason is a failure."""
        answer = await self.open(endpoint_url, model, messages, max_tokens)
        try:
            async for event in answer.events():
                yield event
        finally:
            await answer.close()

    async def open(
        self, endpoint_url: str, model: str, messages: list[Message], max_tokens: int
    ) -> NodeAnswer:
        """Ask the node; returns once it has answered 200 with its headers (it is generating
        then), the answer still to read. Raises NodeFailed."""
        try:
            pinned = await self._endpoints.pin(endpoint_url)
        except InvalidValue as refused:
            raise NodeFailed(f"endpoint refused: {refused}") from None
        body = {
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        extensions = {"sni_hostname": pinned.server_name} if pinned.server_name else {}
        request = self._http.build_request(
            "POST",
            pinned.url,
            json=body,
            headers={"host": pinned.host_header, "accept": "text/event-stream"},
            extensions=extensions,
        )
        try:
            response = await self._http.send(request, stream=True)
        except httpx.HTTPError as error:
            raise NodeFailed(f"cannot connect: {type(error).__name__}") from None
        if response.status_code != 200:
            await response.aclose()
            raise NodeFailed(f"answered HTTP {response.status_code}")
        return NodeAnswer(response)


class NodeAnswer:
    """A node's answer being streamed: read its `events` once, then `close` it (closing an
    answer not read to its end tells the node to stop)."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    async def events(self) -> AsyncIterator[NodeEvent]:
        try:
            async for event in _events(self._response):
                yield event
                if isinstance(event, Finished):
                    return
            raise NodeFailed("the stream ended before the answer did")
        except httpx.HTTPError as error:
            raise NodeFailed(f"stream broken: {type(error).__name__}") from None

    async def close(self) -> None:
        await self._response.aclose()


async def _events(response: httpx.Response) -> AsyncIterator[NodeEvent]:
    reason: str | None = None
    usage: Usage | None = None
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            if reason is None:
                raise NodeFailed("[DONE] without a finish reason")
            yield Finished(reason, usage)
            return
        chunk = _json(data)
        usage = _usage(chunk.get("usage")) or usage
        for choice in chunk.get("choices") or ():
            text = (choice.get("delta") or {}).get("content")
            if isinstance(text, str) and text:
                yield Token(text)
            if choice.get("finish_reason"):
                reason = str(choice["finish_reason"])


def _json(data: str) -> dict[str, Any]:
    try:
        chunk = json.loads(data)
    except ValueError:
        raise NodeFailed("sent a line that is not JSON") from None
    if not isinstance(chunk, dict):
        raise NodeFailed("sent a chunk that is not an object")
    if "error" in chunk:
        raise NodeFailed("sent an error")
    return chunk


def _usage(value: object) -> Usage | None:
    if not isinstance(value, dict):
        return None
    prompt, completion = value.get("prompt_tokens"), value.get("completion_tokens")
    if isinstance(prompt, int) and isinstance(completion, int):
        return Usage(prompt, completion)
    return None
