"""A chat's terms: what is asked, what the answer is made of, the policy that prices it, what
this process knows of its nodes, and the peers a chat needs (as Protocols, implemented by
services.serving.peers and services.serving.nodes)."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Protocol

from services.serving.domain import Message, Price, ServingNode, Usage
from services.serving.nodes import NodeEvent

# A hold outlives the longest answer; one nobody settles (credits unreachable) expires by itself.
RESERVATION_TTL_SECONDS = 3600


@dataclass(frozen=True)
class Held:
    reservation_id: str
    available: int  # the wallet's available credits right after the hold


class Credits(Protocol):
    """The credits service as serving uses it (services.serving.peers)."""

    async def reserve(self, wallet: str, amount: int, key: str, description: str) -> Held:
        """Raises InsufficientCredits or CreditsUnavailable."""

    async def confirm(self, reservation_id: str, amount: int, key: str) -> None: ...

    async def rollback(self, reservation_id: str, key: str) -> None: ...

    async def grant(self, wallet: str, amount: int, key: str, description: str) -> None: ...


class OpenAnswer(Protocol):
    def events(self) -> AsyncIterator[NodeEvent]: ...

    async def close(self) -> None: ...


class NodeStreams(Protocol):
    def stream(
        self, endpoint_url: str, model: str, messages: list[Message], max_tokens: int
    ) -> AsyncIterator[NodeEvent]: ...

    async def open(
        self, endpoint_url: str, model: str, messages: list[Message], max_tokens: int
    ) -> OpenAnswer:
        """Ask the node; returns once it is answering (raises NodeFailed)."""


class EndpointCheck(Protocol):
    async def canonical(self, url: str) -> str:
        """The URL to store; raises validators.InvalidValue."""


@dataclass(frozen=True)
class ServingPolicy:
    prices: dict[str, Price]
    default_price: Price
    node_share_percent: int
    offline_after: timedelta
    failure_cooldown_seconds: float

    def price_of(self, model: str, adapter: str) -> Price:
        return self.prices.get(adapter or model, self.default_price)


class FinishReason(Enum):
    STOP = "stop"
    LENGTH = "length"
    NODE_FAILURE = "node_failure"


@dataclass(frozen=True)
class ChatRequest:
    wallet_address: str
    model: str
    adapter: str
    messages: list[Message]
    max_tokens: int


@dataclass(frozen=True)
class ChatStarted:
    chat_id: str
    model: str  # `model` or `model:adapter`
    create_time: datetime
    price: Price
    reserved: int


@dataclass(frozen=True)
class Piece:
    text: str


@dataclass(frozen=True)
class ChatEnded:
    reason: FinishReason
    usage: Usage
    charged: int


ChatEvent = ChatStarted | Piece | ChatEnded


class NodeHealth:
    """This process's view of its nodes: calls in flight (least loaded first) and nodes that
    just failed (skipped for the cooldown). Per process on purpose: a failure seen here says
    nothing certain about the node's health as another replica reaches it."""

    def __init__(self, cooldown_seconds: float, monotonic: Callable[[], float] = time.monotonic):
        self._cooldown = cooldown_seconds
        self._monotonic = monotonic
        self._failed_at: dict[str, float] = {}
        self.in_flight: dict[str, int] = {}

    def failed(self, node_id: str) -> None:
        self._failed_at[node_id] = self._monotonic()

    def usable(self, node_id: str) -> bool:
        failed = self._failed_at.get(node_id)
        return failed is None or self._monotonic() - failed >= self._cooldown

    def order(self, nodes: list[ServingNode]) -> list[ServingNode]:
        usable = [node for node in nodes if self.usable(node.node_id)]
        return sorted(usable, key=lambda n: (n.load + self.in_flight.get(n.node_id, 0), n.node_id))


@dataclass
class Chat:
    """One chat being answered. The consumer calls `received()` for each piece that reached
    its client; what is charged follows from that (see services.serving.domain)."""

    request: ChatRequest
    started: ChatStarted
    prompt_bound: int
    reservation_id: str | None
    events: AsyncGenerator[ChatEvent, None] = field(init=False)
    received_pieces: int = 0

    def received(self) -> None:
        self.received_pieces += 1
