"""API keys as every service meets them: users, credits and mining ask a real apikeys server,
cache its answers, and refuse keys that are not usable with a reason that says why."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import partial

import grpc
import pytest
from r3mes.apikeys.v1 import apikeys_pb2
from r3mes.credits.v1 import credits_pb2
from r3mes.users.v1 import users_pb2, users_pb2_grpc

from services.core import validators
from services.core.settings import Settings
from services.core.testing import FakeClock, new_wallet_address, running_server
from services.users.server import create_server as create_users
from tests.integration.apikeys_support import INTERNAL, as_bearer, as_key, issue_key
from tests.integration.rpc import failure_of
from tests.integration.topologies import SPLIT, Suite, running_suite

STATS = users_pb2.GetNetworkStatsRequest()


@pytest.fixture
async def suite(
    settings: Settings, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Suite]:
    # A long cache: whatever is refused below was refused because it was asked again.
    monkeypatch.setenv("R3MES_APIKEYS_CACHE_TTL_SECONDS", "60")
    async with running_suite(settings, SPLIT, clock) as suite:
        yield suite


def ledger_of(wallet: str) -> credits_pb2.ListLedgerEntriesRequest:
    return credits_pb2.ListLedgerEntriesRequest(wallet_address=wallet)


async def outcome(call: object) -> str:
    """`OK`, or the code and reason of the refusal."""
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        failure = failure_of(error)
        return f"{failure.code.name} {failure.reason}"
    return "OK"


async def test_a_key_acts_for_its_own_wallet_on_another_service(suite: Suite) -> None:
    wallet = new_wallet_address()
    secret = (await issue_key(suite.apikeys, wallet)).secret

    own = await outcome(suite.credits.ListLedgerEntries(ledger_of(wallet), metadata=as_key(secret)))
    bearer = await outcome(
        suite.credits.ListLedgerEntries(ledger_of(wallet), metadata=as_bearer(secret))
    )

    # Past authentication and authorization: credits lists the wallet's (empty) ledger.
    assert own == bearer == "OK"


async def test_a_call_without_a_key_is_anonymous_and_own_wallet_rpcs_want_one(
    suite: Suite,
) -> None:
    assert await outcome(suite.users.GetNetworkStats(STATS)) == "OK"
    assert (
        await outcome(suite.credits.ListLedgerEntries(ledger_of(new_wallet_address())))
        == "UNAUTHENTICATED CREDENTIALS_MISSING"
    )


async def test_a_revoked_key_is_refused_as_revoked_once_its_cached_answer_is_gone(
    settings: Settings, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("R3MES_APIKEYS_CACHE_TTL_SECONDS", "0.2")
    async with running_suite(settings, SPLIT, clock) as suite:
        wallet = new_wallet_address()
        created = await issue_key(suite.apikeys, wallet)
        key = as_key(created.secret)
        assert await outcome(suite.users.GetNetworkStats(STATS, metadata=key)) == "OK"
        await suite.apikeys.RevokeAPIKey(
            apikeys_pb2.RevokeAPIKeyRequest(wallet_address=wallet, key_id=created.api_key.key_id),
            metadata=INTERNAL,
        )
        await asyncio.sleep(0.3)

        refused = await outcome(suite.users.GetNetworkStats(STATS, metadata=key))

    assert refused == "UNAUTHENTICATED API_KEY_REVOKED"


async def test_an_expired_key_is_refused_as_expired_even_while_its_answer_is_cached(
    suite: Suite, clock: FakeClock
) -> None:
    secret = (await issue_key(suite.apikeys, new_wallet_address(), expires_days=1)).secret
    assert await outcome(suite.users.GetNetworkStats(STATS, metadata=as_key(secret))) == "OK"
    clock.advance(days=1)

    refused = await outcome(suite.users.GetNetworkStats(STATS, metadata=as_key(secret)))

    assert refused == "UNAUTHENTICATED API_KEY_EXPIRED"


async def test_a_key_never_issued_is_refused_as_invalid_never_anonymous(suite: Suite) -> None:
    refused = await outcome(
        suite.users.GetNetworkStats(STATS, metadata=as_key(validators.new_api_key()))
    )

    assert refused == "UNAUTHENTICATED API_KEY_INVALID"


async def test_a_key_revoked_by_its_owner_in_the_apikeys_service_is_refused_there_at_once(
    suite: Suite,
) -> None:
    wallet = new_wallet_address()
    created = await issue_key(suite.apikeys, wallet)
    key = as_key(created.secret)
    listing = apikeys_pb2.ListAPIKeysRequest(wallet_address=wallet)
    assert await outcome(suite.apikeys.ListAPIKeys(listing, metadata=key)) == "OK"

    await suite.apikeys.RevokeAPIKey(
        apikeys_pb2.RevokeAPIKeyRequest(wallet_address=wallet, key_id=created.api_key.key_id),
        metadata=key,
    )

    # The apikeys service checks keys itself and forgets a withdrawn one at once.
    assert (
        await outcome(suite.apikeys.ListAPIKeys(listing, metadata=key))
        == "UNAUTHENTICATED API_KEY_REVOKED"
    )


async def test_a_malformed_key_is_refused_without_asking_the_apikeys_service(
    settings: Settings,
) -> None:
    # settings point apikeys_target at a port nobody listens on.
    async with running_server(create_users, settings, "users") as (_, channel):
        users = users_pb2_grpc.UsersServiceStub(channel)
        key = validators.new_api_key()
        # A different last character, always: the checksum no longer matches.
        typo = key[:-1] + ("y" if key.endswith("x") else "x")
        malformed = await outcome(users.GetNetworkStats(STATS, metadata=as_key(typo)))
        well_formed = await outcome(
            users.GetNetworkStats(STATS, metadata=as_key(validators.new_api_key()))
        )

    assert malformed == "UNAUTHENTICATED API_KEY_INVALID"
    assert well_formed == "UNAVAILABLE API_KEYS_UNAVAILABLE"


async def test_a_cached_answer_serves_while_the_apikeys_service_is_away(
    settings: Settings, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("R3MES_APIKEYS_CACHE_TTL_SECONDS", "60")
    async with running_suite(settings, SPLIT, clock) as suite:
        secret = (await issue_key(suite.apikeys, new_wallet_address())).secret
        users_settings = suite.settings
        async with running_server(partial(create_users, clock=clock), users_settings, "users") as (
            _,
            channel,
        ):
            users = users_pb2_grpc.UsersServiceStub(channel)
            first = await outcome(users.GetNetworkStats(STATS, metadata=as_key(secret)))
            await suite.servers["apikeys"].stop(grace_seconds=0)
            again = await outcome(users.GetNetworkStats(STATS, metadata=as_key(secret)))
            other = await outcome(
                users.GetNetworkStats(STATS, metadata=as_key(validators.new_api_key()))
            )

    assert (first, again) == ("OK", "OK")
    assert other == "UNAVAILABLE API_KEYS_UNAVAILABLE"
