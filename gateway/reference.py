"""`make run`'s reference serving node, registered once the suite is healthy (gateway/run.py)."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from r3mes.serving.v1 import serving_pb2, serving_pb2_grpc

from services.core.auth import INTERNAL_TOKEN_HEADER
from services.core.registry import SERVICES, target_of
from services.core.settings import Settings
from services.core.testing import new_wallet_address
from tools.reference_node import DEFAULT_MODEL

SERVICE = serving_pb2.DESCRIPTOR.services_by_name["ServingService"].full_name


def register_node(
    target: str, token: str, url: str, models: Sequence[str] = (DEFAULT_MODEL,)
) -> str:
    """Registers the node at `url` serving `models` for a new wallet, on the internal token,
    with serving at `target`; the owner's wallet. Raises grpc.RpcError."""
    owner = new_wallet_address()
    request = serving_pb2.RegisterServingNodeRequest(
        wallet_address=owner, endpoint_url=url, models=models
    )
    with grpc.insecure_channel(target) as channel:
        stub = serving_pb2_grpc.ServingServiceStub(channel)
        stub.RegisterServingNode(request, metadata=((INTERNAL_TOKEN_HEADER, token),), timeout=5)
    return owner


def register(settings: Settings, url: str) -> str:
    """Registers the node at `url` for a new wallet, on the internal token; what to print."""
    spec = next(spec for spec in SERVICES if spec.proto_service == SERVICE)
    token = settings.internal_token_value() or ""
    try:
        owner = register_node(target_of(settings, spec.name), token, url)
    except grpc.RpcError as error:
        return f"The reference node could not be registered: {error.details()}"
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
