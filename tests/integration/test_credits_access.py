"""Who may call what on credits, and bad input refused naming the field with nothing stored."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import grpc
import pytest
from google.protobuf.message import Message
from r3mes.credits.v1 import credits_pb2

from services.core.auth import Authenticator, InternalTokenAuthenticator, Principal
from services.core.settings import Settings
from services.core.testing import new_wallet_address
from tests.integration.credits_support import (
    CREDIT,
    INTERNAL,
    Credits,
    assert_invariants,
    running_credits,
    stored_rows,
)
from tests.integration.rpc import failure_of

WALLET_HEADER = "x-test-wallet"


class StandInWalletKeys:
    """Stands in for the API-key authenticator (the apikeys service is not built yet): the
    wallet named in a test header is the caller."""

    async def authenticate(self, metadata: Mapping[str, str]) -> Principal | None:
        wallet = metadata.get(WALLET_HEADER)
        return None if wallet is None else Principal.wallet(wallet)


@pytest.fixture
async def credits(settings: Settings) -> AsyncIterator[Credits]:
    authenticators: list[Authenticator] = [
        InternalTokenAuthenticator(settings.internal_token_value()),
        StandInWalletKeys(),
    ]
    async with running_credits(settings, authenticators=authenticators) as running:
        yield running
        await assert_invariants(running)


OWNER = new_wallet_address()
MUTATIONS: list[tuple[str, Message]] = [
    (
        "GrantCredits",
        credits_pb2.GrantCreditsRequest(
            wallet_address=OWNER, amount_micro_credits=CREDIT, idempotency_key="a-1"
        ),
    ),
    (
        "ReserveCredits",
        credits_pb2.ReserveCreditsRequest(
            wallet_address=OWNER, amount_micro_credits=CREDIT, idempotency_key="a-2"
        ),
    ),
    (
        "DeductCredits",
        credits_pb2.DeductCreditsRequest(
            wallet_address=OWNER, amount_micro_credits=CREDIT, idempotency_key="a-3"
        ),
    ),
    (
        "ConfirmReservation",
        credits_pb2.ConfirmReservationRequest(reservation_id="r", idempotency_key="a-4"),
    ),
    (
        "RollbackReservation",
        credits_pb2.RollbackReservationRequest(reservation_id="r", idempotency_key="a-5"),
    ),
]


@pytest.mark.parametrize(("rpc", "request_message"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
@pytest.mark.parametrize(
    ("metadata", "outcome"),
    [
        # No API key opens an internal RPC: the anonymous caller is told it is internal.
        pytest.param((), (grpc.StatusCode.PERMISSION_DENIED, "INTERNAL_ONLY"), id="anonymous"),
        pytest.param(
            ((WALLET_HEADER, OWNER),),
            (grpc.StatusCode.PERMISSION_DENIED, "INTERNAL_ONLY"),
            id="the-wallet-itself",
        ),
    ],
)
async def test_outsiders_cannot_move_credits_not_even_the_wallets_own(
    credits: Credits,
    rpc: str,
    request_message: Message,
    metadata: tuple[tuple[str, str], ...],
    outcome: tuple[grpc.StatusCode, str],
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await getattr(credits.stub, rpc)(request_message, metadata=metadata)

    failure = failure_of(raised.value)
    assert (failure.code, failure.reason) == outcome
    assert (await stored_rows(credits.settings))["accounts"] == []


async def test_a_wallet_lists_its_own_ledger_and_not_another(credits: Credits) -> None:
    other = new_wallet_address()
    await credits.grant(OWNER, CREDIT)
    await credits.grant(other, CREDIT)
    own = ((WALLET_HEADER, OWNER),)

    listed = await credits.stub.ListLedgerEntries(
        credits_pb2.ListLedgerEntriesRequest(wallet_address=OWNER), metadata=own
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await credits.stub.ListLedgerEntries(
            credits_pb2.ListLedgerEntriesRequest(wallet_address=other), metadata=own
        )

    assert [entry.wallet_address for entry in listed.ledger_entries] == [OWNER]
    failure = failure_of(raised.value)
    assert (failure.code, failure.reason) == (grpc.StatusCode.PERMISSION_DENIED, "WRONG_WALLET")


async def test_balances_and_the_network_total_are_public(credits: Credits) -> None:
    await credits.grant(OWNER, 2 * CREDIT)

    balance = await credits.stub.GetBalance(credits_pb2.GetBalanceRequest(wallet_address=OWNER))
    total = await credits.stub.GetCreditsTotal(credits_pb2.GetCreditsTotalRequest())

    assert balance.balance.available_micro_credits == 2 * CREDIT
    assert total.total_micro_credits == 2 * CREDIT


BAD_REQUESTS: list[tuple[str, Message, str]] = [
    (
        "GrantCredits",
        credits_pb2.GrantCreditsRequest(
            wallet_address=OWNER, amount_micro_credits=0, idempotency_key="v-1"
        ),
        "amount_micro_credits",
    ),
    (
        "GrantCredits",
        credits_pb2.GrantCreditsRequest(
            wallet_address=OWNER, amount_micro_credits=10**15 + 1, idempotency_key="v-2"
        ),
        "amount_micro_credits",
    ),
    (
        "GrantCredits",
        credits_pb2.GrantCreditsRequest(
            wallet_address="remes1nope", amount_micro_credits=1, idempotency_key="v-3"
        ),
        "wallet_address",
    ),
    (
        "GrantCredits",
        credits_pb2.GrantCreditsRequest(wallet_address=OWNER, amount_micro_credits=1),
        "idempotency_key",
    ),
    (
        "GrantCredits",
        credits_pb2.GrantCreditsRequest(
            wallet_address=OWNER, amount_micro_credits=1, idempotency_key="bad key!"
        ),
        "idempotency_key",
    ),
    (
        "GrantCredits",
        credits_pb2.GrantCreditsRequest(
            wallet_address=OWNER,
            amount_micro_credits=1,
            description="x" * 257,
            idempotency_key="v-4",
        ),
        "description",
    ),
    (
        "ReserveCredits",
        credits_pb2.ReserveCreditsRequest(
            wallet_address=OWNER, amount_micro_credits=-5, idempotency_key="v-5"
        ),
        "amount_micro_credits",
    ),
    (
        "ReserveCredits",
        credits_pb2.ReserveCreditsRequest(
            wallet_address=OWNER, amount_micro_credits=1, ttl_seconds=3601, idempotency_key="v-6"
        ),
        "ttl_seconds",
    ),
    (
        "DeductCredits",
        credits_pb2.DeductCreditsRequest(
            wallet_address=OWNER, amount_micro_credits=0, idempotency_key="v-7"
        ),
        "amount_micro_credits",
    ),
    (
        "ConfirmReservation",
        credits_pb2.ConfirmReservationRequest(
            reservation_id="r", amount_micro_credits=0, idempotency_key="v-8"
        ),
        "amount_micro_credits",
    ),
    (
        "ConfirmReservation",
        credits_pb2.ConfirmReservationRequest(idempotency_key="v-9"),
        "reservation_id",
    ),
    (
        "RollbackReservation",
        credits_pb2.RollbackReservationRequest(reservation_id="r" * 65, idempotency_key="v-10"),
        "reservation_id",
    ),
    (
        "ListLedgerEntries",
        credits_pb2.ListLedgerEntriesRequest(wallet_address=OWNER, page_size=101),
        "page_size",
    ),
]


@pytest.mark.parametrize(
    ("rpc", "request_message", "field"),
    BAD_REQUESTS,
    ids=[f"{rpc}-{field}-{i}" for i, (rpc, _, field) in enumerate(BAD_REQUESTS)],
)
async def test_bad_input_is_invalid_argument_naming_the_field_and_stores_nothing(
    credits: Credits, rpc: str, request_message: Message, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await getattr(credits.stub, rpc)(request_message, metadata=INTERNAL)

    failure = failure_of(raised.value)
    assert failure.code is grpc.StatusCode.INVALID_ARGUMENT
    assert list(failure.bad_fields) == [field]
    rows = await stored_rows(credits.settings)
    assert rows == {"accounts": [], "reservations": [], "ledger": [], "idempotency_keys": []}
