"""The apikeys service through a real server and channel, on SQLite and PostgreSQL: keys are
made, listed, revoked, deleted and validated as the proto says."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, timedelta
from functools import partial
from typing import TYPE_CHECKING

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from r3mes.apikeys.v1 import apikeys_pb2, apikeys_pb2_grpc
from sqlalchemy import select

from services.apikeys import tables
from services.apikeys.server import create_server
from services.core import validators
from services.core.db import Database
from services.core.settings import Settings
from services.core.testing import FakeClock, new_wallet_address, running_server
from tests.conftest import START
from tests.integration.apikeys_support import INTERNAL, as_bearer, as_key, issue_key, validate
from tests.integration.rpc import failure_of

if TYPE_CHECKING:
    from tests.integration.apikeys_support import Stub


@pytest.fixture
async def apikeys(
    settings: Settings, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Stub]:
    monkeypatch.setenv("R3MES_APIKEYS_MAX_ACTIVE_PER_WALLET", "3")
    async with running_server(partial(create_server, clock=clock), settings, "apikeys") as (_, ch):
        yield apikeys_pb2_grpc.APIKeysServiceStub(ch)


async def _stored_rows(settings: Settings) -> list[dict[str, object]]:
    database = Database.from_settings(settings, "apikeys")
    try:
        async with database.transaction(read_only=True) as connection:
            rows = await connection.execute(select(tables.api_keys))
            return [dict(row._mapping) for row in rows]
    finally:
        await database.dispose()


async def test_a_new_key_is_shown_once_and_only_its_digest_is_stored(
    apikeys: Stub, settings: Settings
) -> None:
    wallet = new_wallet_address()

    created = await issue_key(apikeys, wallet, name="ci runner")

    secret = created.secret
    assert validators.api_key(secret) == secret
    key = created.api_key
    assert (key.wallet_address, key.name, key.state) == (
        wallet,
        "ci runner",
        apikeys_pb2.API_KEY_STATE_ACTIVE,
    )
    assert key.key_prefix == f"{secret[:10]}...{secret[-4:]}"
    assert key.create_time.ToDatetime(UTC) == START
    assert not key.HasField("expire_time")
    [row] = await _stored_rows(settings)
    assert row["secret_digest"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in {str(value) for value in row.values()}
    listed = await apikeys.ListAPIKeys(
        apikeys_pb2.ListAPIKeysRequest(wallet_address=wallet), metadata=INTERNAL
    )
    assert [k.key_id for k in listed.api_keys] == [key.key_id]
    assert secret.encode() not in listed.SerializeToString()


async def test_key_ids_are_long_random_tokens(apikeys: Stub) -> None:
    wallet = new_wallet_address()
    ids = {(await issue_key(apikeys, wallet)).api_key.key_id for _ in range(3)}

    assert len(ids) == 3
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", key_id) for key_id in ids)


async def test_a_key_made_to_expire_expires_after_that_many_days(
    apikeys: Stub, clock: FakeClock
) -> None:
    created = await issue_key(apikeys, new_wallet_address(), expires_days=30)

    assert created.api_key.expire_time.ToDatetime(UTC) == START + timedelta(days=30)
    assert (await validate(apikeys, created.secret)).status == apikeys_pb2.VALIDATION_STATUS_VALID
    clock.advance(days=30)
    answer = await validate(apikeys, created.secret)
    assert answer.status == apikeys_pb2.VALIDATION_STATUS_EXPIRED
    assert answer.wallet_address == ""


@pytest.mark.parametrize("days", [0, 366, -1])
async def test_expiry_outside_1_to_365_days_is_invalid_and_creates_nothing(
    apikeys: Stub, days: int
) -> None:
    wallet = new_wallet_address()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await issue_key(apikeys, wallet, expires_days=days)

    failure = failure_of(raised.value)
    assert failure.code is grpc.StatusCode.INVALID_ARGUMENT
    assert list(failure.bad_fields) == ["expires_days"]
    listed = await apikeys.ListAPIKeys(
        apikeys_pb2.ListAPIKeysRequest(wallet_address=wallet), metadata=INTERNAL
    )
    assert list(listed.api_keys) == []


async def test_a_wallet_at_its_limit_of_active_keys_is_refused_with_a_quota_failure(
    apikeys: Stub,
) -> None:
    wallet = new_wallet_address()
    first = await issue_key(apikeys, wallet)
    for _ in range(2):
        await issue_key(apikeys, wallet)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await issue_key(apikeys, wallet)

    failure = failure_of(raised.value)
    assert failure.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert failure.reason == "API_KEY_LIMIT_REACHED"
    status = rpc_status.from_call(raised.value)
    assert status is not None
    quota = error_details_pb2.QuotaFailure()
    assert any(detail.Unpack(quota) for detail in status.details)
    assert [v.subject for v in quota.violations] == [f"wallet:{wallet}"]
    # A revoked key no longer counts.
    await apikeys.RevokeAPIKey(
        apikeys_pb2.RevokeAPIKeyRequest(wallet_address=wallet, key_id=first.api_key.key_id),
        metadata=INTERNAL,
    )
    await issue_key(apikeys, wallet)


async def test_expired_keys_do_not_count_towards_the_limit(apikeys: Stub, clock: FakeClock) -> None:
    wallet = new_wallet_address()
    for _ in range(3):
        await issue_key(apikeys, wallet, expires_days=1)
    clock.advance(days=1)

    created = await issue_key(apikeys, wallet)

    assert created.api_key.state == apikeys_pb2.API_KEY_STATE_ACTIVE


async def test_keys_are_listed_newest_first_page_by_page_with_their_states(
    apikeys: Stub, clock: FakeClock
) -> None:
    wallet = new_wallet_address()
    made = []
    for name in ("one", "two", "three"):
        made.append((await issue_key(apikeys, wallet, name=name, expires_days=2)).api_key)
        clock.advance(hours=1)
    await apikeys.RevokeAPIKey(
        apikeys_pb2.RevokeAPIKeyRequest(wallet_address=wallet, key_id=made[1].key_id),
        metadata=INTERNAL,
    )
    await issue_key(apikeys, new_wallet_address())  # another wallet's key is never listed
    request = apikeys_pb2.ListAPIKeysRequest(wallet_address=wallet, page_size=2)

    first = await apikeys.ListAPIKeys(request, metadata=INTERNAL)
    request.page_token = first.next_page_token
    second = await apikeys.ListAPIKeys(request, metadata=INTERNAL)

    assert [k.name for k in first.api_keys] == ["three", "two"]
    assert [k.state for k in first.api_keys] == [
        apikeys_pb2.API_KEY_STATE_ACTIVE,
        apikeys_pb2.API_KEY_STATE_REVOKED,
    ]
    assert first.api_keys[1].revoke_time.ToDatetime(UTC) == START + timedelta(hours=3)
    assert [k.name for k in second.api_keys] == ["one"]
    assert second.next_page_token == ""
    clock.advance(days=2)
    later = await apikeys.ListAPIKeys(
        apikeys_pb2.ListAPIKeysRequest(wallet_address=wallet), metadata=INTERNAL
    )
    assert [k.state for k in later.api_keys] == [
        apikeys_pb2.API_KEY_STATE_EXPIRED,
        apikeys_pb2.API_KEY_STATE_REVOKED,
        apikeys_pb2.API_KEY_STATE_EXPIRED,
    ]


async def test_a_page_token_of_another_wallet_is_invalid_argument(apikeys: Stub) -> None:
    wallet = new_wallet_address()
    for _ in range(2):
        await issue_key(apikeys, wallet)
    first = await apikeys.ListAPIKeys(
        apikeys_pb2.ListAPIKeysRequest(wallet_address=wallet, page_size=1), metadata=INTERNAL
    )

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await apikeys.ListAPIKeys(
            apikeys_pb2.ListAPIKeysRequest(
                wallet_address=new_wallet_address(), page_token=first.next_page_token
            ),
            metadata=INTERNAL,
        )

    assert list(failure_of(raised.value).bad_fields) == ["page_token"]


async def test_revoking_keeps_the_key_listed_and_revoking_again_changes_nothing(
    apikeys: Stub, clock: FakeClock
) -> None:
    wallet = new_wallet_address()
    created = await issue_key(apikeys, wallet)
    request = apikeys_pb2.RevokeAPIKeyRequest(wallet_address=wallet, key_id=created.api_key.key_id)

    revoked = await apikeys.RevokeAPIKey(request, metadata=INTERNAL)
    clock.advance(minutes=5)
    again = await apikeys.RevokeAPIKey(request, metadata=INTERNAL)

    assert revoked.api_key.state == apikeys_pb2.API_KEY_STATE_REVOKED
    assert revoked.api_key.revoke_time.ToDatetime(UTC) == START
    assert again.api_key == revoked.api_key
    answer = await validate(apikeys, created.secret)
    assert answer.status == apikeys_pb2.VALIDATION_STATUS_REVOKED


async def test_a_deleted_key_is_gone_and_deleting_it_again_is_not_found(apikeys: Stub) -> None:
    wallet = new_wallet_address()
    created = await issue_key(apikeys, wallet)
    request = apikeys_pb2.DeleteAPIKeyRequest(wallet_address=wallet, key_id=created.api_key.key_id)

    await apikeys.DeleteAPIKey(request, metadata=INTERNAL)

    listed = await apikeys.ListAPIKeys(
        apikeys_pb2.ListAPIKeysRequest(wallet_address=wallet), metadata=INTERNAL
    )
    assert list(listed.api_keys) == []
    answer = await validate(apikeys, created.secret)
    assert answer.status == apikeys_pb2.VALIDATION_STATUS_NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await apikeys.DeleteAPIKey(request, metadata=INTERNAL)
    failure = failure_of(raised.value)
    assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, "API_KEY_NOT_FOUND")


async def test_a_key_of_another_wallet_cannot_be_revoked_through_this_one(apikeys: Stub) -> None:
    owner = new_wallet_address()
    created = await issue_key(apikeys, owner)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await apikeys.RevokeAPIKey(
            apikeys_pb2.RevokeAPIKeyRequest(
                wallet_address=new_wallet_address(), key_id=created.api_key.key_id
            ),
            metadata=INTERNAL,
        )

    failure = failure_of(raised.value)
    assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, "API_KEY_NOT_FOUND")
    answer = await validate(apikeys, created.secret)
    assert answer.status == apikeys_pb2.VALIDATION_STATUS_VALID


async def test_a_wallet_makes_more_keys_with_its_own_key_as_x_api_key_or_bearer(
    apikeys: Stub,
) -> None:
    wallet = new_wallet_address()
    first = await issue_key(apikeys, wallet)
    request = apikeys_pb2.CreateAPIKeyRequest(wallet_address=wallet, name="phone")

    by_header = await apikeys.CreateAPIKey(request, metadata=as_key(first.secret))
    by_bearer = await apikeys.CreateAPIKey(request, metadata=as_bearer(first.secret))

    assert by_header.api_key.wallet_address == by_bearer.api_key.wallet_address == wallet
    assert len({first.secret, by_header.secret, by_bearer.secret}) == 3


async def test_a_valid_key_is_answered_with_its_wallet_id_and_expiry(apikeys: Stub) -> None:
    wallet = new_wallet_address()
    created = await issue_key(apikeys, wallet, expires_days=7)

    answer = await validate(apikeys, created.secret)

    assert answer.status == apikeys_pb2.VALIDATION_STATUS_VALID
    assert (answer.wallet_address, answer.key_id) == (wallet, created.api_key.key_id)
    assert answer.expire_time.ToDatetime(UTC) == START + timedelta(days=7)


@pytest.mark.parametrize(
    "presented",
    ["nonsense", validators.new_api_key()[:-1] + "0", validators.new_api_key()],
    ids=["not a key", "bad checksum", "never issued"],
)
async def test_anything_but_an_issued_key_is_answered_not_found(
    apikeys: Stub, presented: str
) -> None:
    answer = await validate(apikeys, presented)

    assert answer.status == apikeys_pb2.VALIDATION_STATUS_NOT_FOUND
    assert (answer.wallet_address, answer.key_id) == ("", "")


async def test_last_uses_are_written_in_batches_not_per_validation(
    settings: Settings, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("R3MES_APIKEYS_LAST_USED_FLUSH_SECONDS", "3600")
    wallet = new_wallet_address()
    create = partial(create_server, clock=clock)
    async with running_server(create, settings, "apikeys") as (_, channel):
        stub = apikeys_pb2_grpc.APIKeysServiceStub(channel)
        created = await issue_key(stub, wallet)
        clock.advance(minutes=3)
        for _ in range(5):
            await validate(stub, created.secret)
        before_flush = await stub.ListAPIKeys(
            apikeys_pb2.ListAPIKeysRequest(wallet_address=wallet), metadata=INTERNAL
        )
    # Stopping the server writes what it gathered.
    async with running_server(create, settings, "apikeys") as (_, channel):
        stub = apikeys_pb2_grpc.APIKeysServiceStub(channel)
        after_flush = await stub.ListAPIKeys(
            apikeys_pb2.ListAPIKeysRequest(wallet_address=wallet), metadata=INTERNAL
        )

    assert not before_flush.api_keys[0].HasField("last_used_time")
    assert after_flush.api_keys[0].last_used_time.ToDatetime(UTC) == START + timedelta(minutes=3)


async def test_creations_racing_at_the_limit_let_exactly_one_through(apikeys: Stub) -> None:
    wallet = new_wallet_address()
    for _ in range(2):
        await issue_key(apikeys, wallet)

    outcomes = await asyncio.gather(
        *(issue_key(apikeys, wallet) for _ in range(4)), return_exceptions=True
    )

    created = [o for o in outcomes if isinstance(o, apikeys_pb2.CreateAPIKeyResponse)]
    refused = [failure_of(o).reason for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert (len(created), refused) == (1, ["API_KEY_LIMIT_REACHED"] * 3)
