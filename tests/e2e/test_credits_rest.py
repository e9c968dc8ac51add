"""Credits moved over gRPC with the internal token read the same over REST, from credits itself
and through users, behind the real gateway."""

from __future__ import annotations

import grpc
import httpx
from r3mes.credits.v1 import credits_pb2, credits_pb2_grpc

from runner.local_stack import LocalStack
from services.core.auth import INTERNAL_TOKEN_HEADER
from services.core.testing import new_wallet_address
from tests.e2e.conftest import INTERNAL_TOKEN

INTERNAL = ((INTERNAL_TOKEN_HEADER, INTERNAL_TOKEN),)


async def test_a_balance_reads_the_same_over_rest_from_credits_and_from_users(
    stack: LocalStack, rest: httpx.AsyncClient
) -> None:
    wallet = new_wallet_address()
    created = await rest.post("/v1/users", json={"wallet_address": wallet})
    assert created.status_code == 200, created.text
    async with grpc.aio.insecure_channel(stack.grpc_target("credits")) as channel:
        credits = credits_pb2_grpc.CreditsServiceStub(channel)
        await credits.GrantCredits(
            credits_pb2.GrantCreditsRequest(
                wallet_address=wallet, amount_micro_credits=5_000_000, idempotency_key="e2e-g1"
            ),
            metadata=INTERNAL,
        )
        await credits.ReserveCredits(
            credits_pb2.ReserveCreditsRequest(
                wallet_address=wallet, amount_micro_credits=1_250_000, idempotency_key="e2e-r1"
            ),
            metadata=INTERNAL,
        )

    balance = await rest.get(f"/v1/wallets/{wallet}/balance")
    user = await rest.get(f"/v1/users/{wallet}")

    assert balance.status_code == 200, balance.text
    shown = balance.json()["balance"]
    assert shown["wallet_address"] == wallet
    assert (shown["available_micro_credits"], shown["reserved_micro_credits"]) == (
        "3750000",
        "1250000",
    )
    assert shown["total_micro_credits"] == "5000000"
    assert shown["update_time"].endswith("Z")
    assert user.status_code == 200, user.text
    assert user.json()["user"]["available_micro_credits"] == "3750000"
    assert user.json()["user"]["reserved_micro_credits"] == "1250000"


async def test_moving_credits_over_rest_without_the_internal_token_is_refused(
    rest: httpx.AsyncClient,
) -> None:
    wallet = new_wallet_address()

    reply = await rest.post(
        f"/v1/wallets/{wallet}/reservations",
        json={"amount_micro_credits": "1", "idempotency_key": "e2e-r2"},
    )

    assert reply.status_code == 403, reply.text
    assert reply.json()["details"][0]["reason"] == "INTERNAL_ONLY"
    balance = (await rest.get(f"/v1/wallets/{wallet}/balance")).json()["balance"]
    assert balance["wallet_address"] == wallet
    assert "update_time" not in balance
