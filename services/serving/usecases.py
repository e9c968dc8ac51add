"""The operations of the serving service: nodes, adapters, and chats paid exactly.

A chat: price it, find the fresh nodes that serve it (nothing is reserved when there is none),
reserve the most it can cost, then ask the least loaded node; a node that fails before its
first token is skipped for a while and the next one is asked. Once a token has reached the
client the answer stays with that node. When the answer ends, however it ends, the wallet is
charged for what it received (services.serving.domain.charged_usage), the rest of the hold is
released, and the node's owner is credited its share. Every credits call carries an
idempotency key derived from the chat's id, so a retried call never moves credits twice.

When credits does not answer a capture or a grant even retried, the chat's settlement is kept
in serving's storage and the settlement job asks again, under the same keys, until credits
answers: a capture that had gone through is answered as it was, one that had not is made (or,
past the hold's expiry, refused: the hold went back to the wallet). docs/operations.md,
"Chats whose settlement failed", tells what an operator sees.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import Enum
from typing import Protocol

from services.core import validators
from services.core.clock import Clock
from services.core.errors import InvalidArgument, R3mesError
from services.core.pagination import Page, PageRequest
from services.core.uow import UnitOfWork
from services.serving import metrics
from services.serving.domain import (
    DEFAULT_MAX_TOKENS,
    CreditsUnavailable,
    LoRA,
    LoRAAlreadyExists,
    Message,
    ModelNotServed,
    NodeStatus,
    NoServingNodes,
    Price,
    ServingNode,
    Settlement,
    Usage,
    charge_of,
    charged_usage,
    check_adapter_names,
    check_adapters_fit,
    check_lora_name,
    check_messages,
    check_model_names,
    node_share,
    prompt_token_bound,
)
from services.serving.nodes import Finished, NodeEvent, NodeFailed, Token
from services.serving.repository import ServingRepositories

logger = logging.getLogger(__name__)

ID_BYTES = 16
SETTLE_ATTEMPTS = 3
# A hold outlives the longest answer; one nobody settles (credits unreachable) expires by itself.
RESERVATION_TTL_SECONDS = 3600
SETTLEMENT_JOB = "settlements"
SETTLEMENT_INTERVAL_SECONDS = 10.0
SETTLEMENT_BATCH = 100
# A settlement still failing a day on is given up (logged, counted): credits keeps idempotency
# keys a week at least, so until then a step asked again is answered as it was, never repeated.
SETTLEMENT_GIVE_UP = timedelta(days=1)
CONFIRM, GRANT, ROLLBACK = "confirm", "grant", "rollback"


class Outcome(Enum):
    """How a call to credits ended, retries included."""

    DONE = "done"
    UNAVAILABLE = "unavailable"  # not answered: ask again later, under the same key
    REFUSED = "refused"  # answered no (logged): asking again would not change it


class Credits(Protocol):
    """The credits service as serving uses it (services.serving.peers)."""

    async def reserve(self, wallet: str, amount: int, key: str, description: str) -> str:
        """The reservation's id; raises InsufficientCredits or CreditsUnavailable."""

    async def confirm(self, reservation_id: str, amount: int, key: str) -> None: ...

    async def rollback(self, reservation_id: str, key: str) -> None: ...

    async def grant(self, wallet: str, amount: int, key: str, description: str) -> None: ...


class NodeStreams(Protocol):
    def stream(
        self, endpoint_url: str, model: str, messages: list[Message], max_tokens: int
    ) -> AsyncIterator[NodeEvent]: ...


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


class ServingUseCases:
    def __init__(
        self,
        uow: UnitOfWork[ServingRepositories],
        clock: Clock,
        policy: ServingPolicy,
        credits: Credits,
        nodes: NodeStreams,
        endpoints: EndpointCheck,
        health: NodeHealth,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._policy = policy
        self._credits = credits
        self._nodes = nodes
        self._endpoints = endpoints
        self._health = health
        # Settlements run to the end even when their chat's task is cancelled (client gone).
        self._settling: set[asyncio.Task[int]] = set()

    # --- nodes ----------------------------------------------------------------------------

    async def register_node(
        self, wallet: str, endpoint_url: str, models: list[str], adapters: list[str]
    ) -> ServingNode:
        offered = check_model_names("models", models, required=True)
        claimed = check_adapter_names("lora_adapters", adapters)
        url = await self._checked_endpoint(endpoint_url)
        now = self._clock()
        node = ServingNode(
            node_id=secrets.token_urlsafe(ID_BYTES),
            wallet_address=wallet,
            endpoint_url=url,
            models=offered,
            lora_adapters=claimed,
            status=NodeStatus.ONLINE,
            load=0,
            create_time=now,
            heartbeat_time=now,
        )

        async for attempt in self._uow.attempts():
            async with attempt as r:
                check_adapters_fit(offered, await r.loras.named(claimed), claimed)
                added = await r.nodes.add(node)
        return added

    async def heartbeat(
        self,
        wallet: str,
        node_id: str,
        status: NodeStatus,
        load: int,
        models: list[str],
        adapters: list[str],
    ) -> ServingNode:
        changed = bool(models or adapters)
        offered = check_model_names("models", models, required=changed)
        claimed = check_adapter_names("lora_adapters", adapters)
        now = self._clock()

        async for attempt in self._uow.attempts():
            async with attempt as r:
                node = await r.nodes.owned(wallet, node_id)
                offers = None
                if changed:
                    check_adapters_fit(offered, await r.loras.named(claimed), claimed)
                    offers = (offered, claimed)
                beaten = await r.nodes.beat(node, status=status, load=load, now=now, offers=offers)
        return beaten

    async def deregister_node(self, wallet: str, node_id: str) -> None:
        await self._uow.run(lambda r: r.nodes.remove(wallet, node_id))

    async def list_nodes(
        self, model: str, adapter: str, fresh_only: bool, page_request: PageRequest
    ) -> Page[ServingNode]:
        fresh_since = self._clock() - self._policy.offline_after if fresh_only else None

        return await self._uow.run(
            lambda r: r.nodes.page_of(model, adapter, fresh_since, page_request), read_only=True
        )

    def is_fresh(self, node: ServingNode) -> bool:
        return node.fresh_at(self._clock(), self._policy.offline_after)

    async def _checked_endpoint(self, url: str) -> str:
        try:
            return await self._endpoints.canonical(url)
        except validators.InvalidValue as refused:
            raise InvalidArgument.for_field("endpoint_url", str(refused)) from None

    # --- adapters ---------------------------------------------------------------------------

    async def register_lora(
        self, name: str, base_model: str, content_id: str, description: str
    ) -> LoRA:
        check_lora_name("name", name)
        check_model_names("base_model", [base_model], required=True)
        try:
            validators.ipfs_cid(content_id)
        except validators.InvalidValue as problem:
            raise InvalidArgument.for_field("content_id", str(problem)) from None
        lora = LoRA(name, base_model, content_id, description, True, self._clock())

        async for attempt in self._uow.attempts():
            async with attempt as r:
                added = await r.loras.add(lora)
        if added is None:
            raise LoRAAlreadyExists(name)
        return added

    async def list_loras(self, include_inactive: bool, page_request: PageRequest) -> Page[LoRA]:
        return await self._uow.run(
            lambda r: r.loras.page_of(include_inactive, page_request), read_only=True
        )

    # --- chats ------------------------------------------------------------------------------

    async def start_chat(self, request: ChatRequest) -> Chat:
        """Price, pick and reserve; raises before anything is reserved when the chat cannot be
        served or paid. The answer is `chat.events`: ChatStarted, Pieces, one ChatEnded."""
        if not request.wallet_address:
            raise InvalidArgument.for_field("wallet_address", "is required for internal callers")
        check_messages(request.messages)
        check_model_names("model", [request.model], required=True)
        if request.adapter:
            check_lora_name("lora_adapter", request.adapter)
        max_tokens = request.max_tokens or DEFAULT_MAX_TOKENS
        request = ChatRequest(
            request.wallet_address, request.model, request.adapter, request.messages, max_tokens
        )
        label = f"{request.model}:{request.adapter}" if request.adapter else request.model
        candidates = await self._candidates(request, label)
        price = self._policy.price_of(request.model, request.adapter)
        bound = prompt_token_bound(request.messages)
        most = price.most(bound, max_tokens)
        chat_id = "chatcmpl-" + secrets.token_urlsafe(ID_BYTES)
        reservation_id = None
        if most > 0:
            reservation_id = await self._reserve(request.wallet_address, most, chat_id, label)
        started = ChatStarted(chat_id, label, self._clock(), price, most)
        chat = Chat(request, started, bound, reservation_id)
        chat.events = self._answer(chat, candidates)
        return chat

    async def _reserve(self, wallet: str, amount: int, chat_id: str, label: str) -> str:
        """Retried with the same key: an attempt whose answer was lost (a timeout) is replayed,
        never held twice."""
        for attempt in range(1, SETTLE_ATTEMPTS + 1):
            try:
                return await self._credits.reserve(
                    wallet, amount, f"{chat_id}.reserve", f"chat {chat_id} ({label})"
                )
            except CreditsUnavailable:
                if attempt == SETTLE_ATTEMPTS:
                    raise
                await asyncio.sleep(0.05 * attempt)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _candidates(self, request: ChatRequest, label: str) -> list[ServingNode]:
        fresh_since = self._clock() - self._policy.offline_after

        # One statement, the common case; why there is none takes another look.
        fresh = await self._uow.run(
            lambda r: r.nodes.serving(request.model, request.adapter, fresh_since),
            read_only=True,
            one_statement=True,
        )
        registered = bool(fresh) or await self._uow.run(
            lambda r: r.nodes.any_serving(request.model, request.adapter), read_only=True
        )
        if not registered:
            raise ModelNotServed(label)
        ordered = self._health.order(fresh)
        if not ordered:
            raise NoServingNodes(label, 0)
        return ordered

    async def _answer(
        self, chat: Chat, candidates: list[ServingNode]
    ) -> AsyncGenerator[ChatEvent, None]:
        request = chat.request
        model = request.adapter or request.model
        reported: Usage | None = None
        reason = FinishReason.NODE_FAILURE
        serving: ServingNode | None = None
        settled = False
        try:
            yield chat.started
            for node in candidates:
                self._health.in_flight[node.node_id] = (
                    self._health.in_flight.get(node.node_id, 0) + 1
                )
                try:
                    async for event in self._nodes.stream(
                        node.endpoint_url, model, request.messages, request.max_tokens
                    ):
                        if isinstance(event, Token):
                            serving = node
                            if chat.received_pieces >= request.max_tokens:
                                reason = FinishReason.LENGTH
                                break
                            yield Piece(event.text)
                        elif isinstance(event, Finished):
                            serving = node
                            reported = event.usage
                            reason = (
                                FinishReason.LENGTH
                                if event.reason == "length"
                                else FinishReason.STOP
                            )
                except NodeFailed as failure:
                    logger.warning(
                        "serving node failed",
                        extra={
                            "node_id": node.node_id,
                            "chat_id": chat.started.chat_id,
                            "problem": str(failure),
                            "after_first_token": serving is not None,
                        },
                    )
                    if serving is None:
                        self._health.failed(node.node_id)
                        continue
                    reason = FinishReason.NODE_FAILURE
                finally:
                    self._health.in_flight[node.node_id] -= 1
                break
            if serving is None:
                settled = True
                await self._settle(chat, None, Usage(0, 0))
                raise NoServingNodes(chat.started.model, len(candidates))
            usage = charged_usage(
                reported if reason is not FinishReason.NODE_FAILURE else None,
                chat.received_pieces,
                chat.prompt_bound,
                request.max_tokens,
            )
            settled = True
            charged = await self._settle(chat, serving, usage)
            yield ChatEnded(reason, usage, charged)
        finally:
            if not settled:
                # The client went away (or the consumer stopped): charge what reached it.
                usage = charged_usage(
                    None, chat.received_pieces, chat.prompt_bound, request.max_tokens
                )
                task = asyncio.ensure_future(self._settle(chat, serving, usage))
                self._settling.add(task)
                task.add_done_callback(self._settling.discard)

    async def _settle(self, chat: Chat, node: ServingNode | None, usage: Usage) -> int:
        """Capture the charge (or release the hold) and credit the node's owner its share;
        returns the chat's charge (0 when credits refused the capture). A capture or grant that
        credits does not answer even retried is left to the settlement job; a release that
        fails leaves the hold to expire back to the wallet. Never charges the wallet more."""
        charge = charge_of(chat.started.price, usage, chat.started.reserved)
        chat_id, reservation = chat.started.chat_id, chat.reservation_id
        metrics.TOKENS_SERVED.inc(chat.received_pieces)
        if reservation is None:
            return 0
        if charge == 0:
            released = await self._retried(
                ROLLBACK,
                chat_id,
                lambda: self._credits.rollback(reservation, f"{chat_id}.rollback"),
            )
            if released is Outcome.UNAVAILABLE:
                metrics.SETTLEMENT_FAILURES.labels(ROLLBACK).inc()
                logger.error(
                    "chat settlement failed: the hold expires back to the wallet",
                    extra={"step": ROLLBACK, "chat_id": chat_id, "reservation_id": reservation},
                )
            return 0
        share = node_share(charge, self._policy.node_share_percent) if node else 0
        owner = node.wallet_address if node is not None and share > 0 else None
        settlement = Settlement(chat_id, reservation, charge, usage, owner, share, self._clock())
        outcome, step = await self._settled(settlement, SETTLE_ATTEMPTS)
        if outcome is Outcome.UNAVAILABLE:
            metrics.SETTLEMENT_FAILURES.labels(step).inc()
            await self._defer(replace(settlement, confirmed=step == GRANT), step)
        if outcome is Outcome.REFUSED and step == CONFIRM:
            return 0
        return charge

    async def _settled(self, settlement: Settlement, attempts: int) -> tuple[Outcome, str]:
        """The capture (unless done before), then the owner's share: DONE, or how the step it
        stopped at ended, and that step."""
        s = settlement
        if not s.confirmed:
            captured = await self._retried(
                CONFIRM,
                s.chat_id,
                lambda: self._credits.confirm(s.reservation_id, s.charge, f"{s.chat_id}.confirm"),
                attempts,
            )
            if captured is not Outcome.DONE:
                return captured, CONFIRM
            metrics.TOKENS_CHARGED.labels("prompt").inc(s.usage.prompt_tokens)
            metrics.TOKENS_CHARGED.labels("completion").inc(s.usage.completion_tokens)
            metrics.MICRO_CREDITS_CHARGED.inc(s.charge)
        owner = s.owner_wallet
        if owner is None:
            return Outcome.DONE, GRANT
        granted = await self._retried(
            GRANT,
            s.chat_id,
            lambda: self._credits.grant(
                owner, s.share, f"{s.chat_id}.share", f"served {s.chat_id}"
            ),
            attempts,
        )
        return granted, GRANT

    async def _defer(self, settlement: Settlement, step: str) -> None:
        """Keep the settlement for the job; should serving's storage fail too, the log line
        holds everything an operator needs to settle it by hand."""
        details = {
            "step": step,
            "chat_id": settlement.chat_id,
            "reservation_id": settlement.reservation_id,
            "charge": settlement.charge,
            "owner_wallet": settlement.owner_wallet,
            "share": settlement.share,
        }
        try:
            await self._uow.run(lambda r: r.settlements.add(settlement))
        except R3mesError:
            logger.exception("chat settlement failed and could not be kept", extra=details)
            return
        logger.error("chat settlement failed: left to the settlement job", extra=details)

    async def _retried(
        self,
        step: str,
        chat_id: str,
        call: Callable[[], Awaitable[None]],
        attempts: int = SETTLE_ATTEMPTS,
    ) -> Outcome:
        """How `call` ended within `attempts` (the same idempotency key each time, so an
        attempt whose answer was lost is not applied twice)."""
        for attempt in range(1, attempts + 1):
            try:
                await call()
                return Outcome.DONE
            except CreditsUnavailable:
                if attempt == attempts:
                    return Outcome.UNAVAILABLE
                await asyncio.sleep(0.05 * attempt)
            except R3mesError as refused:
                logger.error(
                    "chat settlement refused",
                    extra={"step": step, "chat_id": chat_id, "reason": refused.reason},
                )
                return Outcome.REFUSED
        raise AssertionError("unreachable: the last attempt returns")

    async def settle_deferred(self) -> int:
        """The settlement job: ask credits again, once each, for the oldest settlements left
        over; how many it ended. Raises while some still cannot be settled, so the job shows
        as failing in health and metrics until credits answers."""
        pending = await self._uow.run(
            lambda r: r.settlements.oldest(SETTLEMENT_BATCH), read_only=True
        )
        ended = [await self._settle_deferred(settlement) for settlement in pending]
        left = await self._uow.run(lambda r: r.settlements.count(), read_only=True)
        metrics.SETTLEMENTS_PENDING.set(left)
        if not all(ended):
            raise CreditsUnavailable()
        return len(ended)

    async def _settle_deferred(self, settlement: Settlement) -> bool:
        """One settlement asked again; whether it ended (else it waits for the next run)."""
        chat_id = settlement.chat_id
        outcome, step = await self._settled(settlement, attempts=1)
        if outcome is Outcome.UNAVAILABLE:
            if self._clock() - settlement.create_time < SETTLEMENT_GIVE_UP:
                if step == GRANT and not settlement.confirmed:
                    await self._uow.run(lambda r: r.settlements.mark_confirmed(chat_id))
                return False
            logger.error("chat settlement abandoned", extra={"step": step, "chat_id": chat_id})
        ended = {Outcome.DONE: "settled", Outcome.REFUSED: "refused"}
        metrics.DEFERRED_SETTLED.labels(ended.get(outcome, "abandoned")).inc()
        await self._uow.run(lambda r: r.settlements.remove(chat_id))
        return True

    async def drain(self) -> None:
        """Wait for settlements still running (the server is stopping)."""
        if self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)
