"""Proof of wallet ownership through a real server: a challenge, a real secp256k1 signature in
ADR-036 form, and every way an attempt can fail."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, timedelta
from functools import partial
from typing import TYPE_CHECKING

import grpc
import pytest
from r3mes.apikeys.v1 import apikeys_pb2, apikeys_pb2_grpc

from services.apikeys.server import create_server
from services.core.settings import Settings
from services.core.testing import FakeClock, running_server
from tests.conftest import START
from tests.integration.apikeys_support import SigningWallet, high_s, issue_key, validate
from tests.integration.rpc import failure_of

if TYPE_CHECKING:
    from tests.integration.apikeys_support import Stub


@pytest.fixture
async def apikeys(
    settings: Settings, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Stub]:
    monkeypatch.setenv("R3MES_APIKEYS_MAX_ACTIVE_PER_WALLET", "2")
    async with running_server(partial(create_server, clock=clock), settings, "apikeys") as (_, ch):
        yield apikeys_pb2_grpc.APIKeysServiceStub(ch)


async def challenge_for(apikeys: Stub, wallet: str) -> apikeys_pb2.Challenge:
    """Asked anonymously: no metadata at all."""
    response = await apikeys.CreateChallenge(
        apikeys_pb2.CreateChallengeRequest(wallet_address=wallet)
    )
    challenge: apikeys_pb2.Challenge = response.challenge
    return challenge


def answer(
    wallet: str,
    challenge: apikeys_pb2.Challenge,
    signer: SigningWallet,
    signature: bytes | None = None,
) -> apikeys_pb2.CreateAPIKeyWithSignatureRequest:
    return apikeys_pb2.CreateAPIKeyWithSignatureRequest(
        wallet_address=wallet,
        challenge_id=challenge.challenge_id,
        pub_key=signer.pub_key,
        signature=signature or signer.sign_arbitrary(challenge.message),
        name="browser",
    )


async def refusal(apikeys: Stub, request: apikeys_pb2.CreateAPIKeyWithSignatureRequest) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await apikeys.CreateAPIKeyWithSignature(request)
    failure = failure_of(raised.value)
    return f"{failure.code.name} {failure.reason}"


async def test_a_wallet_gets_its_first_key_by_signing_a_challenge(apikeys: Stub) -> None:
    wallet = SigningWallet()

    challenge = await challenge_for(apikeys, wallet.address)
    created = await apikeys.CreateAPIKeyWithSignature(answer(wallet.address, challenge, wallet))

    assert challenge.wallet_address == wallet.address
    assert wallet.address in challenge.message
    assert challenge.create_time.ToDatetime(UTC) == START
    assert challenge.expire_time.ToDatetime(UTC) == START + timedelta(minutes=5)
    assert created.api_key.wallet_address == wallet.address
    assert created.api_key.state == apikeys_pb2.API_KEY_STATE_ACTIVE
    validation = await validate(apikeys, created.secret)
    assert validation.status == apikeys_pb2.VALIDATION_STATUS_VALID
    assert validation.wallet_address == wallet.address


async def test_a_challenge_answered_once_cannot_be_replayed(apikeys: Stub) -> None:
    wallet = SigningWallet()
    challenge = await challenge_for(apikeys, wallet.address)
    request = answer(wallet.address, challenge, wallet)
    await apikeys.CreateAPIKeyWithSignature(request)

    assert await refusal(apikeys, request) == "FAILED_PRECONDITION CHALLENGE_ALREADY_USED"


async def test_a_challenge_past_its_expiry_is_refused(apikeys: Stub, clock: FakeClock) -> None:
    wallet = SigningWallet()
    challenge = await challenge_for(apikeys, wallet.address)
    clock.advance(minutes=5)

    assert (
        await refusal(apikeys, answer(wallet.address, challenge, wallet))
        == "FAILED_PRECONDITION CHALLENGE_EXPIRED"
    )


async def test_a_challenge_of_another_wallet_is_not_found_and_stays_usable(apikeys: Stub) -> None:
    victim, intruder = SigningWallet(), SigningWallet()
    challenge = await challenge_for(apikeys, victim.address)

    outcome = await refusal(apikeys, answer(intruder.address, challenge, intruder))

    assert outcome == "NOT_FOUND CHALLENGE_NOT_FOUND"
    created = await apikeys.CreateAPIKeyWithSignature(answer(victim.address, challenge, victim))
    assert created.api_key.wallet_address == victim.address


async def test_an_unknown_challenge_is_not_found(apikeys: Stub) -> None:
    wallet = SigningWallet()
    made_up = apikeys_pb2.Challenge(challenge_id="no-such-challenge", message="hello")

    outcome = await refusal(apikeys, answer(wallet.address, made_up, wallet))

    assert outcome == "NOT_FOUND CHALLENGE_NOT_FOUND"


async def test_another_wallets_public_key_is_a_mismatch_and_spends_the_challenge(
    apikeys: Stub,
) -> None:
    owner, intruder = SigningWallet(), SigningWallet()
    challenge = await challenge_for(apikeys, owner.address)
    # The intruder signs correctly, as the owner's address, but with its own key.
    forged = answer(
        owner.address,
        challenge,
        intruder,
        intruder.sign_arbitrary(challenge.message, signer=owner.address),
    )

    assert await refusal(apikeys, forged) == "UNAUTHENTICATED PUBLIC_KEY_MISMATCH"
    honest = answer(owner.address, challenge, owner)
    assert await refusal(apikeys, honest) == "FAILED_PRECONDITION CHALLENGE_ALREADY_USED"


@pytest.mark.parametrize("flaw", ["other message", "high S", "other signer"])
async def test_a_signature_that_does_not_sign_this_challenge_is_invalid(
    apikeys: Stub, flaw: str
) -> None:
    wallet = SigningWallet()
    challenge = await challenge_for(apikeys, wallet.address)
    signature = {
        "other message": wallet.sign_arbitrary(challenge.message + "!"),
        "high S": high_s(wallet.sign_arbitrary(challenge.message)),
        "other signer": wallet.sign_arbitrary(challenge.message, signer=SigningWallet().address),
    }[flaw]

    outcome = await refusal(apikeys, answer(wallet.address, challenge, wallet, signature))

    assert outcome == "UNAUTHENTICATED SIGNATURE_INVALID"


@pytest.mark.parametrize(
    ("field", "pub_key", "signature"),
    [("pub_key", b"\x02" * 20, None), ("signature", None, b"\x01" * 65)],
)
async def test_malformed_keys_and_signatures_are_invalid_and_spend_nothing(
    apikeys: Stub, field: str, pub_key: bytes | None, signature: bytes | None
) -> None:
    wallet = SigningWallet()
    challenge = await challenge_for(apikeys, wallet.address)
    request = answer(wallet.address, challenge, wallet)
    if pub_key is not None:
        request.pub_key = pub_key
    if signature is not None:
        request.signature = signature

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await apikeys.CreateAPIKeyWithSignature(request)

    failure = failure_of(raised.value)
    assert failure.code is grpc.StatusCode.INVALID_ARGUMENT
    assert list(failure.bad_fields) == [field]
    created = await apikeys.CreateAPIKeyWithSignature(answer(wallet.address, challenge, wallet))
    assert created.api_key.wallet_address == wallet.address


async def test_a_signed_key_is_refused_when_the_wallet_is_at_its_limit(apikeys: Stub) -> None:
    wallet = SigningWallet()
    for _ in range(2):
        await issue_key(apikeys, wallet.address)
    challenge = await challenge_for(apikeys, wallet.address)

    outcome = await refusal(apikeys, answer(wallet.address, challenge, wallet))

    assert outcome == "RESOURCE_EXHAUSTED API_KEY_LIMIT_REACHED"


async def test_answers_racing_for_one_challenge_make_exactly_one_key(apikeys: Stub) -> None:
    wallet = SigningWallet()
    challenge = await challenge_for(apikeys, wallet.address)
    request = answer(wallet.address, challenge, wallet)

    outcomes = await asyncio.gather(
        *(apikeys.CreateAPIKeyWithSignature(request) for _ in range(3)), return_exceptions=True
    )

    made = [o for o in outcomes if isinstance(o, apikeys_pb2.CreateAPIKeyWithSignatureResponse)]
    refused = [failure_of(o).reason for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert (len(made), refused) == (1, ["CHALLENGE_ALREADY_USED"] * 2)
