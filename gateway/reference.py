"""`make run`'s reference serving node, registered once the suite is healthy (gateway/run.py)."""

from __future__ import annotations

import grpc
from r3mes.serving.v1 import serving_pb2, serving_pb2_grpc

from services.core.auth import INTERNAL_TOKEN_HEADER
from services.core.registry import SERVICES, target_of
from services.core.settings import Settings
from services.core.testing import new_wallet_address
from tools.reference_node import DEFAULT_MODEL

SERVICE = serving_pb2.DESCRIPTOR.services_by_name["ServingService"].full_name


def register(settings: Settings, url: str) -> str:
    """Registers the node at `url` for a new wallet, on the internal token; what to print."""
    spec = next(spec for spec in SERVICES if spec.proto_service == SERVICE)
    token = settings.internal_token_value()
    owner = new_wallet_address()
    request = serving_pb2.RegisterServingNodeRequest(
        wallet_address=owner, endpoint_url=url, models=[DEFAULT_MODEL]
    )
    with grpc.insecure_channel(target_of(settings, spec.name)) as channel:
        stub = serving_pb2_grpc.ServingServiceStub(channel)
        try:
            stub.RegisterServingNode(
                request, metadata=((INTERNAL_TOKEN_HEADER, token or ""),), timeout=5
            )
        except grpc.RpcError as error:
            return f"The reference node could not be registered: {error.details()}"
    return (
        f"Reference serving node: {url} serves {DEFAULT_MODEL}, registered for wallet {owner}\n"
        "  (it earns its share of each chat). Chat with a key of a wallet holding credits:\n"
        f'  grpcurl -plaintext -H \'x-api-key: <key>\' -d \'{{"model": "{DEFAULT_MODEL}", '
        '"messages": [{"role": "user", "content": "hello"}]}\' '
        f"127.0.0.1:{settings.gateway_port} r3mes.serving.v1.ServingService/StreamChatCompletion"
    )
