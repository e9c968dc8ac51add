"""`ServingUseCases`: nodes, LoRA adapters and chats, as the servicer asks for them."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from services.core import validators
from services.core.clock import Clock
from services.core.errors import InvalidArgument
from services.core.pagination import Page, PageRequest
from services.core.uow import UnitOfWork
from services.serving.domain import (
    DEFAULT_MAX_TOKENS,
    CreditsUnavailable,
    InsufficientCredits,
    LoRA,
    LoRAAlreadyExists,
    ModelNotServed,
    NodeStatus,
    NoServingNodes,
    ServingNode,
    Usage,
    charged_usage,
    check_adapter_names,
    check_adapters_fit,
    check_lora_name,
    check_messages,
    check_model_names,
    prompt_token_bound,
)
from services.serving.nodes import Finished, NodeEvent, NodeFailed, Token
from services.serving.repository import ServingRepositories
from services.serving.usecases.chat import (
    Chat,
    ChatEnded,
    ChatEvent,
    ChatRequest,
    ChatStarted,
    Credits,
    EndpointCheck,
    FinishReason,
    NodeHealth,
    NodeStreams,
    OpenAnswer,
    Piece,
    ServingPolicy,
)
from services.serving.usecases.recent import CreditHints, RecentNodes
from services.serving.usecases.settlement import SETTLE_ATTEMPTS, Settlements

logger = logging.getLogger(__name__)

ID_BYTES = 16


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
        self._recent = RecentNodes()
        self._hints = CreditHints()
        self._settlements = Settlements(uow, clock, credits, policy.node_share_percent)

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
        self._recent.clear()
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
        self._recent.clear()
        return beaten

    async def deregister_node(self, wallet: str, node_id: str) -> None:
        await self._uow.run(lambda r: r.nodes.remove(wallet, node_id))
        self._recent.clear()

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
        opened = None
        if most > 0 and self._hints.likely_to_pay(request.wallet_address, most):
            # Asked while the hold is written (services.serving.usecases.recent).
            opened = await self._open_first(request, candidates, label, chat_id)
            candidates = candidates[candidates.index(opened.node) :]
        try:
            if most > 0:
                reservation_id = await self._reserve(request.wallet_address, most, chat_id, label)
        except BaseException:
            if opened is not None:
                await opened.answer.close()
            raise
        started = ChatStarted(chat_id, label, self._clock(), price, most)
        chat = Chat(request, started, bound, reservation_id)
        chat.events = self._answer(chat, candidates, opened)
        return chat

    async def _open_first(
        self, request: ChatRequest, candidates: list[ServingNode], label: str, chat_id: str
    ) -> Opened:
        """The first candidate that answers, asked; raises NoServingNodes when none does."""
        for node in candidates:
            try:
                model = request.adapter or request.model
                answer = await self._nodes.open(
                    node.endpoint_url, model, request.messages, request.max_tokens
                )
            except NodeFailed as failure:
                self._node_failed(node, chat_id, failure, after_first_token=False)
                continue
            return Opened(node, answer)
        raise NoServingNodes(label, len(candidates))

    async def _reserve(self, wallet: str, amount: int, chat_id: str, label: str) -> str:
        """Retried with the same key: an attempt whose answer was lost (a timeout) is replayed,
        never held twice."""
        for attempt in range(1, SETTLE_ATTEMPTS + 1):
            try:
                held = await self._credits.reserve(
                    wallet, amount, f"{chat_id}.reserve", f"chat {chat_id} ({label})"
                )
            except CreditsUnavailable:
                if attempt == SETTLE_ATTEMPTS:
                    raise
                await asyncio.sleep(0.05 * attempt)
            except InsufficientCredits as refused:
                self._hints.seen(wallet, refused.available or 0)
                raise
            else:
                self._hints.seen(wallet, held.available)
                return held.reservation_id
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _candidates(self, request: ChatRequest, label: str) -> list[ServingNode]:
        model, adapter = request.model, request.adapter
        serving = self._recent.get(model, adapter)
        if serving is None:
            # One statement, the common case; why there is none takes another look.
            serving = await self._uow.run(
                lambda r: r.nodes.serving(model, adapter),
                read_only=True,
                one_statement=True,
            )
            self._recent.put(model, adapter, serving)
        fresh = [node for node in serving if self.is_fresh(node)]
        registered = bool(fresh) or await self._uow.run(
            lambda r: r.nodes.any_serving(request.model, request.adapter), read_only=True
        )
        if not registered:
            raise ModelNotServed(label)
        ordered = self._health.order(fresh)
        if not ordered:
            raise NoServingNodes(label, 0)
        return ordered

    def _node_failed(
        self, node: ServingNode, chat_id: str, failure: NodeFailed, *, after_first_token: bool
    ) -> None:
        logger.warning(
            "serving node failed",
            extra={
                "node_id": node.node_id,
                "chat_id": chat_id,
                "problem": str(failure),
                "after_first_token": after_first_token,
            },
        )
        if not after_first_token:
            self._health.failed(node.node_id)

    def _events(
        self, node: ServingNode, request: ChatRequest, opened: Opened | None
    ) -> AsyncIterator[NodeEvent]:
        if opened is not None and opened.node is node:
            return _read_to_the_end(opened.answer)
        model = request.adapter or request.model
        return self._nodes.stream(node.endpoint_url, model, request.messages, request.max_tokens)

    async def _answer(
        self, chat: Chat, candidates: list[ServingNode], opened: Opened | None
    ) -> AsyncGenerator[ChatEvent, None]:
        request = chat.request
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
                    async for event in self._events(node, request, opened):
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
                    self._node_failed(
                        node, chat.started.chat_id, failure, after_first_token=serving is not None
                    )
                    if serving is None:
                        continue
                    reason = FinishReason.NODE_FAILURE
                finally:
                    self._health.in_flight[node.node_id] -= 1
                break
            if serving is None:
                settled = True
                await self._settlements.settle(chat, None, Usage(0, 0))
                raise NoServingNodes(chat.started.model, len(candidates))
            usage = charged_usage(
                reported if reason is not FinishReason.NODE_FAILURE else None,
                chat.received_pieces,
                chat.prompt_bound,
                request.max_tokens,
            )
            settled = True
            charged = await self._settlements.settle(chat, serving, usage)
            yield ChatEnded(reason, usage, charged)
        finally:
            if not settled:
                # The client went away (or the consumer stopped): charge what reached it.
                usage = charged_usage(
                    None, chat.received_pieces, chat.prompt_bound, request.max_tokens
                )
                self._settlements.settle_later(chat, serving, usage)

    # --- settlement -----------------------------------------------------------------------

    async def settle_deferred(self) -> int:
        """The settlement job's run (services.serving.usecases.settlement)."""
        return await self._settlements.settle_deferred()

    async def drain(self) -> None:
        """Wait for settlements still running (the server is stopping)."""
        await self._settlements.drain()


@dataclass(frozen=True)
class Opened:
    """A node asked before the chat's hold was written, its answer not read yet."""

    node: ServingNode
    answer: OpenAnswer


async def _read_to_the_end(answer: OpenAnswer) -> AsyncIterator[NodeEvent]:
    try:
        async for event in answer.events():
            yield event
    finally:
        await answer.close()
