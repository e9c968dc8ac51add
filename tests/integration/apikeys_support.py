"""What the API-key tests share: calling as internal or as a key, and issuing keys."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

from r3mes.apikeys.v1 import apikeys_pb2

from tests.conftest import INTERNAL_TOKEN

if TYPE_CHECKING:
    from r3mes.apikeys.v1 import apikeys_pb2_grpc

    Stub: TypeAlias = apikeys_pb2_grpc.APIKeysServiceAsyncStub

INTERNAL = (("x-r3mes-internal-token", INTERNAL_TOKEN),)


def as_key(secret: str) -> tuple[tuple[str, str], ...]:
    return (("x-api-key", secret),)


def as_bearer(secret: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {secret}"),)


async def issue_key(
    stub: Stub, wallet: str, name: str = "laptop", expires_days: int | None = None
) -> apikeys_pb2.CreateAPIKeyResponse:
    """A key made on internal authority (as an operator would), for tests that need one."""
    request = apikeys_pb2.CreateAPIKeyRequest(wallet_address=wallet, name=name)
    if expires_days is not None:
        request.expires_days = expires_days
    response: apikeys_pb2.CreateAPIKeyResponse = await stub.CreateAPIKey(request, metadata=INTERNAL)
    return response


async def validate(stub: Stub, secret: str) -> apikeys_pb2.ValidateAPIKeyResponse:
    response: apikeys_pb2.ValidateAPIKeyResponse = await stub.ValidateAPIKey(
        apikeys_pb2.ValidateAPIKeyRequest(secret=secret), metadata=INTERNAL
    )
    return response
