"""`make run`'s reference serving node, registered once the suite is healthy (runner/run.py)."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from r3mes.serving.v1 import serving_pb2, serving_pb2_grpc

from gateway.frontdoor.chat_service import chat_service
from gateway.settings import GatewaySettings
from services.core.auth import INTERNAL_TOKEN_HEADER
from services.core.registry import target_of
from services.core.validators import new_wallet_address
from tools.reference_node import DEFAULT_MODEL

OFFLINE_AFTER_SETTING = "serving_node_offline_after_seconds"


def register_node(
    target: str,
    token: str,
    url: str,
    models: Sequence[str] = (DEFAULT_MODEL,),
    adapters: Sequence[str] = (),
) -> serving_pb2.ServingNode:
    """Registers the node at `url` serving `models` (and registered LoRA `adapters`) for a new
    wallet, on the internal token, with serving at `target`. Raises grpc.RpcError."""
    request = serving_pb2.RegisterServingNodeRequest(
        wallet_address=new_wallet_address(), endpoint_url=url, models=models, lora_adapters=adapters
    )
    with grpc.insecure_channel(target) as channel:
        stub = serving_pb2_grpc.ServingServiceStub(channel)
        reply = stub.RegisterServingNode(
            request, metadata=((INTERNAL_TOKEN_HEADER, token),), timeout=5
        )
    return reply.node


def beat(target: str, token: str, node: serving_pb2.ServingNode) -> None:
    """A heartbeat for `node` on its owner's behalf, so it stays fresh. Raises grpc.RpcError."""
    request = serving_pb2.HeartbeatRequest(wallet_address=node.wallet_address, node_id=node.node_id)
    with grpc.insecure_channel(target) as channel:
        stub = serving_pb2_grpc.ServingServiceStub(channel)
        stub.Heartbeat(request, metadata=((INTERNAL_TOKEN_HEADER, token),), timeout=5)


class ReferenceNode:
    """`make run`'s node: registered once the suite serves, then kept fresh by a heartbeat every
    third of R3MES_SERVING_NODE_OFFLINE_AFTER_SECONDS (a node registered and never heard from
    again goes offline after it, and a newcomer's chats would find no node)."""

    def __init__(self, settings: GatewaySettings, url: str) -> None:
        spec = chat_service()
        self._settings = settings
        self._target = target_of(settings, spec.name)
        self._token = settings.internal_token_value() or ""
        self._url = url
        self._node: serving_pb2.ServingNode | None = None
        # Serving's own setting, read as serving reads it (through its spec: the gateway imports
        # no service's code).
        own = spec.settings() if spec.settings is not None else None
        self.beat_interval_seconds = float(getattr(own, OFFLINE_AFTER_SETTING)) / 3

    def register(self) -> str:
        """Registers it for a new wallet; what to print."""
        try:
            self._node = register_node(self._target, self._token, self._url)
        except grpc.RpcError as error:
            return f"The reference node could not be registered: {error.details()}"
        return registered_message(self._settings, self._url, self._node.wallet_address)

    def beat(self) -> str | None:
        """A heartbeat, if registered; what to print when it failed."""
        if self._node is None:
            return None
        try:
            beat(self._target, self._token, self._node)
        except grpc.RpcError as error:
            return f"The reference node's heartbeat failed: {error.details()}"
        return None


def registered_message(settings: GatewaySettings, url: str, owner: str) -> str:
    return (
        f"Reference serving node: {url} serves {DEFAULT_MODEL}, registered for wallet {owner}\n"
        "  (it earns its share of each chat). Chat with a key of a wallet holding credits:\n"
        f'  grpcurl -plaintext -H \'x-api-key: <key>\' -d \'{{"model": "{DEFAULT_MODEL}", '
        '"messages": [{"role": "user", "content": "hello"}]}\' '
        f"127.0.0.1:{settings.gateway_port} r3mes.serving.v1.ServingService/StreamChatCompletion\n"
        '  or with any OpenAI client (docs/api.md, "OpenAI-compatible door"):\n'
        f"  curl -s http://127.0.0.1:{settings.gateway_port}/v1/chat/completions "
        f'-H \'authorization: Bearer <key>\' -d \'{{"model": "{DEFAULT_MODEL}", '
        '"messages": [{"role": "user", "content": "hello"}]}\''
    )
