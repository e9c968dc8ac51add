"""The internal service token is honoured over gRPC from inside, and never from outside through
the gateway: Envoy strips every x-r3mes-* header before a service sees it."""

from __future__ import annotations

import grpc
import httpx
from r3mes.credits.v1 import credits_pb2, credits_pb2_grpc

from runner.local_stack import LocalStack
from services.core.auth import INTERNAL_TOKEN_HEADER
from services.core.testing import new_wallet_address
from tests.e2e.conftest import INTERNAL_TOKEN

TOKEN_HEADER = INTERNAL_TOKEN_HEADER


def grant_request(wallet: str) -> credits_pb2.GrantCreditsRequest:
    return credits_pb2.GrantCreditsRequest(
        wallet_address=wallet, amount_micro_credits=5_000_000, idempotency_key="e2e-grant-1"
    )


async def grant_over_grpc(target: str, token: str) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = credits_pb2_grpc.CreditsServiceStub(channel)
        try:
            await stub.GrantCredits(
                grant_request(new_wallet_address()),
                metadata=[(TOKEN_HEADER, token)],
                timeout=5,
            )
        except grpc.aio.AioRpcError as failure:
            code: grpc.StatusCode = failure.code()
            return code
    return grpc.StatusCode.OK


async def test_the_internal_token_sent_directly_passes_authorization(stack: LocalStack) -> None:
    code = await grant_over_grpc(stack.grpc_target("credits"), INTERNAL_TOKEN)

    # Authentication, validation and authorization all let the call through: it is granted.
    assert code == grpc.StatusCode.OK


async def test_the_internal_token_sent_over_rest_never_reaches_the_service(
    rest: httpx.AsyncClient,
) -> None:
    wallet = new_wallet_address()

    reply = await rest.post(
        f"/v1/wallets/{wallet}/balance:grant",
        json={"amount_micro_credits": "5000000", "idempotency_key": "e2e-grant-2"},
        headers={TOKEN_HEADER: INTERNAL_TOKEN},
    )

    # The service saw an anonymous caller (the header was gone before it arrived), and told it
    # the method is for internal callers.
    assert reply.status_code == 403, reply.text
    assert reply.json()["code"] == 7  # PERMISSION_DENIED
    assert reply.json()["details"][0]["reason"] == "INTERNAL_ONLY"


async def test_the_internal_token_in_any_letter_case_is_stripped(rest: httpx.AsyncClient) -> None:
    reply = await rest.post(
        f"/v1/wallets/{new_wallet_address()}/balance:grant",
        json={"amount_micro_credits": "1", "idempotency_key": "e2e-grant-3"},
        headers={"X-R3MES-Internal-Token": INTERNAL_TOKEN},
    )

    assert reply.status_code == 403, reply.text
    assert reply.json()["details"][0]["reason"] == "INTERNAL_ONLY"


async def test_the_internal_token_sent_over_grpc_through_the_gateway_is_stripped(
    stack: LocalStack,
) -> None:
    code = await grant_over_grpc(stack.gateway_target, INTERNAL_TOKEN)

    assert code == grpc.StatusCode.PERMISSION_DENIED
