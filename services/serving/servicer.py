"""ServingService: each RPC converts the request, calls its use case, converts the result.

The chat RPCs count a piece as received once it has been handed to the client's stream
(streaming), or only when the whole answer is returned (unary): what is charged follows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import grpc
from r3mes.serving.v1 import serving_pb2, serving_pb2_grpc

from services.core.page_tokens import PageTokens
from services.core.wire import timestamp
from services.serving.domain import LoRA, Message, NodeStatus, ServingNode, Usage
from services.serving.usecases import (
    ChatEnded,
    ChatRequest,
    ChatStarted,
    FinishReason,
    Piece,
    ServingUseCases,
)

Context = grpc.aio.ServicerContext[Any, Any]

_STATUSES = {
    NodeStatus.ONLINE: serving_pb2.NODE_STATUS_ONLINE,
    NodeStatus.DRAINING: serving_pb2.NODE_STATUS_DRAINING,
}
_FINISH_REASONS = {
    FinishReason.STOP: serving_pb2.FINISH_REASON_STOP,
    FinishReason.LENGTH: serving_pb2.FINISH_REASON_LENGTH,
    FinishReason.NODE_FAILURE: serving_pb2.FINISH_REASON_NODE_FAILURE,
}
ChatRequestMessage = (
    serving_pb2.StreamChatCompletionRequest | serving_pb2.CreateChatCompletionRequest
)


class ServingServicer(serving_pb2_grpc.ServingServiceServicer):
    def __init__(self, use_cases: ServingUseCases, tokens: PageTokens) -> None:
        self._use_cases = use_cases
        self._tokens = tokens

    async def RegisterServingNode(
        self, request: serving_pb2.RegisterServingNodeRequest, context: Context
    ) -> serving_pb2.RegisterServingNodeResponse:
        node = await self._use_cases.register_node(
            request.wallet_address,
            request.endpoint_url,
            list(request.models),
            list(request.lora_adapters),
        )
        return serving_pb2.RegisterServingNodeResponse(node=self._node_message(node))

    async def Heartbeat(
        self, request: serving_pb2.HeartbeatRequest, context: Context
    ) -> serving_pb2.HeartbeatResponse:
        status = (
            NodeStatus.DRAINING
            if request.status == serving_pb2.NODE_STATUS_DRAINING
            else NodeStatus.ONLINE
        )
        node = await self._use_cases.heartbeat(
            request.wallet_address,
            request.node_id,
            status,
            request.load,
            list(request.models),
            list(request.lora_adapters),
        )
        return serving_pb2.HeartbeatResponse(node=self._node_message(node))

    async def ListServingNodes(
        self, request: serving_pb2.ListServingNodesRequest, context: Context
    ) -> serving_pb2.ListServingNodesResponse:
        page = await self._use_cases.list_nodes(
            request.model,
            request.lora_adapter,
            request.fresh_only,
            self._tokens.request_of(request),
        )
        return serving_pb2.ListServingNodesResponse(
            nodes=[self._node_message(node) for node in page.items],
            next_page_token=self._tokens.next_token(request, page),
        )

    async def DeregisterServingNode(
        self, request: serving_pb2.DeregisterServingNodeRequest, context: Context
    ) -> serving_pb2.DeregisterServingNodeResponse:
        await self._use_cases.deregister_node(request.wallet_address, request.node_id)
        return serving_pb2.DeregisterServingNodeResponse()

    async def RegisterLoRA(
        self, request: serving_pb2.RegisterLoRARequest, context: Context
    ) -> serving_pb2.RegisterLoRAResponse:
        lora = await self._use_cases.register_lora(
            request.name, request.base_model, request.content_id, request.description
        )
        return serving_pb2.RegisterLoRAResponse(lora=lora_message(lora))

    async def ListLoRAs(
        self, request: serving_pb2.ListLoRAsRequest, context: Context
    ) -> serving_pb2.ListLoRAsResponse:
        page = await self._use_cases.list_loras(
            request.include_inactive, self._tokens.request_of(request)
        )
        return serving_pb2.ListLoRAsResponse(
            loras=[lora_message(lora) for lora in page.items],
            next_page_token=self._tokens.next_token(request, page),
        )

    async def StreamChatCompletion(
        self, request: serving_pb2.StreamChatCompletionRequest, context: Context
    ) -> AsyncIterator[serving_pb2.StreamChatCompletionResponse]:
        chat = await self._use_cases.start_chat(chat_request(request))
        async with aclosing(chat.events) as events:
            async for event in events:
                chunk = serving_pb2.StreamChatCompletionResponse(
                    id=chat.started.chat_id,
                    model=chat.started.model,
                    create_time=timestamp(chat.started.create_time),
                )
                if isinstance(event, ChatStarted):
                    chunk.charge.CopyFrom(charge_message(event, 0))
                elif isinstance(event, Piece):
                    chunk.delta = event.text
                else:
                    chunk.finish_reason = _FINISH_REASONS[event.reason]
                    chunk.usage.CopyFrom(usage_message(event.usage))
                    chunk.charge.CopyFrom(charge_message(chat.started, event.charged))
                yield chunk
                if isinstance(event, Piece):
                    chat.received()

    async def CreateChatCompletion(
        self, request: serving_pb2.CreateChatCompletionRequest, context: Context
    ) -> serving_pb2.CreateChatCompletionResponse:
        chat = await self._use_cases.start_chat(chat_request(request))
        pieces: list[str] = []
        ended: ChatEnded | None = None
        async with aclosing(chat.events) as events:
            async for event in events:
                if isinstance(event, Piece):
                    pieces.append(event.text)
                    # Received only as part of the whole answer: counted as it is returned.
                    chat.received()
                elif isinstance(event, ChatEnded):
                    ended = event
        assert ended is not None  # the events end with ChatEnded or raise
        return serving_pb2.CreateChatCompletionResponse(
            id=chat.started.chat_id,
            model=chat.started.model,
            create_time=timestamp(chat.started.create_time),
            content="".join(pieces),
            finish_reason=_FINISH_REASONS[ended.reason],
            usage=usage_message(ended.usage),
            charge=charge_message(chat.started, ended.charged),
        )

    def _node_message(self, node: ServingNode) -> serving_pb2.ServingNode:
        return serving_pb2.ServingNode(
            node_id=node.node_id,
            wallet_address=node.wallet_address,
            endpoint_url=node.endpoint_url,
            models=node.models,
            lora_adapters=node.lora_adapters,
            status=_STATUSES[node.status],
            load=node.load,
            fresh=self._use_cases.is_fresh(node),
            create_time=timestamp(node.create_time),
            heartbeat_time=timestamp(node.heartbeat_time),
        )


def chat_request(request: ChatRequestMessage) -> ChatRequest:
    return ChatRequest(
        wallet_address=request.wallet_address,
        model=request.model,
        adapter=request.lora_adapter,
        messages=[Message(m.role, m.content) for m in request.messages],
        max_tokens=request.max_tokens,
    )


def lora_message(lora: LoRA) -> serving_pb2.LoRA:
    return serving_pb2.LoRA(
        name=lora.name,
        base_model=lora.base_model,
        content_id=lora.content_id,
        description=lora.description,
        active=lora.active,
        create_time=timestamp(lora.create_time),
    )


def usage_message(usage: Usage) -> serving_pb2.Usage:
    return serving_pb2.Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )


def charge_message(started: ChatStarted, charged: int) -> serving_pb2.Charge:
    return serving_pb2.Charge(
        prompt_micro_credits_per_token=started.price.prompt,
        completion_micro_credits_per_token=started.price.completion,
        reserved_micro_credits=started.reserved,
        charged_micro_credits=charged,
    )
