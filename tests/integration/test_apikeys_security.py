"""Security of API keys: no wallet acts on another's data, keys never reach internal RPCs, and
a key's secret appears nowhere but in the response that created it."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from r3mes.apikeys.v1 import apikeys_pb2
from r3mes.credits.v1 import credits_pb2
from r3mes.mining.v1 import mining_pb2
from r3mes.users.v1 import users_pb2

from services.core.logging import JsonFormatter
from services.core.settings import Settings
from services.core.testing import FakeClock, new_wallet_address
from tests.integration.apikeys_support import INTERNAL, SigningWallet, as_key, issue_key
from tests.integration.rpc import failure_of
from tests.integration.topologies import SPLIT, Suite, running_suite


@pytest.fixture
async def suite(settings: Settings, clock: FakeClock) -> AsyncIterator[Suite]:
    async with running_suite(settings, SPLIT, clock) as suite:
        yield suite


Attempt = Callable[[Suite, str, str, str], Awaitable[Any]]

# Each own-wallet RPC of the suite, aimed at `wallet` (whose key `key_id` is its target where it
# takes one) while presenting the key `secret`.
OWN_WALLET_RPCS: dict[str, Attempt] = {
    "ListAPIKeys": lambda s, wallet, secret, key_id: s.apikeys.ListAPIKeys(
        apikeys_pb2.ListAPIKeysRequest(wallet_address=wallet), metadata=as_key(secret)
    ),
    "CreateAPIKey": lambda s, wallet, secret, key_id: s.apikeys.CreateAPIKey(
        apikeys_pb2.CreateAPIKeyRequest(wallet_address=wallet, name="stolen"),
        metadata=as_key(secret),
    ),
    "RevokeAPIKey": lambda s, wallet, secret, key_id: s.apikeys.RevokeAPIKey(
        apikeys_pb2.RevokeAPIKeyRequest(wallet_address=wallet, key_id=key_id),
        metadata=as_key(secret),
    ),
    "DeleteAPIKey": lambda s, wallet, secret, key_id: s.apikeys.DeleteAPIKey(
        apikeys_pb2.DeleteAPIKeyRequest(wallet_address=wallet, key_id=key_id),
        metadata=as_key(secret),
    ),
    "ListLedgerEntries": lambda s, wallet, secret, key_id: s.credits.ListLedgerEntries(
        credits_pb2.ListLedgerEntriesRequest(wallet_address=wallet), metadata=as_key(secret)
    ),
}

INTERNAL_RPCS: dict[str, Attempt] = {
    "ValidateAPIKey": lambda s, wallet, secret, key_id: s.apikeys.ValidateAPIKey(
        apikeys_pb2.ValidateAPIKeyRequest(secret=secret), metadata=as_key(secret)
    ),
    "GrantCredits": lambda s, wallet, secret, key_id: s.credits.GrantCredits(
        credits_pb2.GrantCreditsRequest(
            wallet_address=wallet, amount_micro_credits=5, idempotency_key="grant-1"
        ),
        metadata=as_key(secret),
    ),
    "RecordMiningStats": lambda s, wallet, secret, key_id: s.mining.RecordMiningStats(
        mining_pb2.RecordMiningStatsRequest(wallet_address=wallet, idempotency_key="stats-1"),
        metadata=as_key(secret),
    ),
}


async def refusal(call: Awaitable[Any]) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    failure = failure_of(raised.value)
    return f"{failure.code.name} {failure.reason}"


@pytest.mark.parametrize("rpc", sorted(OWN_WALLET_RPCS))
async def test_a_key_of_wallet_a_is_denied_every_own_wallet_rpc_on_wallet_b(
    suite: Suite, rpc: str
) -> None:
    a, b = new_wallet_address(), new_wallet_address()
    secret_a = (await issue_key(suite.apikeys, a)).secret
    victim = await issue_key(suite.apikeys, b)
    attempt = OWN_WALLET_RPCS[rpc](suite, b, secret_a, victim.api_key.key_id)

    assert await refusal(attempt) == ("PERMISSION_DENIED WRONG_WALLET")
    listed = await suite.apikeys.ListAPIKeys(
        apikeys_pb2.ListAPIKeysRequest(wallet_address=b), metadata=INTERNAL
    )
    assert [(k.key_id, k.state) for k in listed.api_keys] == [
        (victim.api_key.key_id, apikeys_pb2.API_KEY_STATE_ACTIVE)
    ]


@pytest.mark.parametrize("rpc", sorted(INTERNAL_RPCS))
async def test_a_wallet_key_is_denied_internal_rpcs_even_for_its_own_wallet(
    suite: Suite, rpc: str
) -> None:
    wallet = new_wallet_address()
    secret = (await issue_key(suite.apikeys, wallet)).secret

    assert await refusal(INTERNAL_RPCS[rpc](suite, wallet, secret, "")) == (
        "PERMISSION_DENIED INTERNAL_ONLY"
    )


async def test_a_keys_secret_appears_in_no_log_line_error_or_listing(
    suite: Suite, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wallet = SigningWallet()
    challenge = (
        await suite.apikeys.CreateChallenge(
            apikeys_pb2.CreateChallengeRequest(wallet_address=wallet.address)
        )
    ).challenge
    created = await suite.apikeys.CreateAPIKeyWithSignature(
        apikeys_pb2.CreateAPIKeyWithSignatureRequest(
            wallet_address=wallet.address,
            challenge_id=challenge.challenge_id,
            pub_key=wallet.pub_key,
            signature=wallet.sign_arbitrary(challenge.message),
            name="browser",
        )
    )
    secret = created.secret
    key = as_key(secret)
    seen: list[str] = []
    await suite.users.GetNetworkStats(users_pb2.GetNetworkStatsRequest(), metadata=key)
    listed = await suite.apikeys.ListAPIKeys(
        apikeys_pb2.ListAPIKeysRequest(wallet_address=wallet.address), metadata=key
    )
    seen.append(listed.SerializeToString().decode("latin-1"))
    seen.append(json.dumps([str(k) for k in listed.api_keys]))
    for call in (
        suite.apikeys.ListAPIKeys(
            apikeys_pb2.ListAPIKeysRequest(wallet_address=new_wallet_address()), metadata=key
        ),
        suite.apikeys.ValidateAPIKey(apikeys_pb2.ValidateAPIKeyRequest(secret=secret * 7)),
        suite.credits.GrantCredits(
            credits_pb2.GrantCreditsRequest(
                wallet_address=wallet.address, amount_micro_credits=1, idempotency_key="g"
            ),
            metadata=key,
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        seen.extend([str(raised.value), repr(raised.value.trailing_metadata())])
    await suite.apikeys.RevokeAPIKey(
        apikeys_pb2.RevokeAPIKeyRequest(
            wallet_address=wallet.address, key_id=created.api_key.key_id
        ),
        metadata=INTERNAL,
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await suite.apikeys.ListAPIKeys(
            apikeys_pb2.ListAPIKeysRequest(wallet_address=wallet.address), metadata=key
        )
    seen.extend([str(raised.value), repr(raised.value.trailing_metadata())])

    formatter = JsonFormatter()
    seen.extend(formatter.format(record) for record in caplog.records)
    seen.extend(repr(record.__dict__) for record in caplog.records)
    assert len(caplog.records) > 10  # the access log, at least, was captured
    body = secret[len("r3mes_") :]
    assert not [text for text in seen if body in text]
