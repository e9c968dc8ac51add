"""Failed authentications are limited per client address under the shipped policy
`auth_failures` (10 a minute): a client guessing keys gets exactly ten 401s, then 429 with
RetryInfo, and from then on costs no ValidateAPIKey RPC. Real apikeys, users and credits
servers; the client is this test, calling from 127.0.0.1."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import grpc
import pytest
from r3mes.credits.v1 import credits_pb2
from r3mes.users.v1 import users_pb2

from services.core import validators
from services.core.settings import Settings
from services.core.testing import FakeClock, new_wallet_address
from tests.integration.apikeys_support import as_key, issue_key
from tests.integration.ratelimited import quota_subjects, retry_delay_seconds
from tests.integration.rpc import error_headers, failure_of
from tests.integration.topologies import SPLIT, Suite, running_suite

ALLOWANCE = 10
VALIDATE = "/r3mes.apikeys.v1.APIKeysService/ValidateAPIKey"
STATS = users_pb2.GetNetworkStatsRequest()
INVALID = "UNAUTHENTICATED API_KEY_INVALID"
LIMITED = "RESOURCE_EXHAUSTED RATE_LIMITED"


@pytest.fixture
async def suite(settings: Settings) -> AsyncIterator[Suite]:
    async with running_suite(
        settings, SPLIT, FakeClock(datetime(2026, 1, 15, 12, 0, tzinfo=UTC))
    ) as suite:
        yield suite


async def refusal(call: object) -> tuple[str, grpc.aio.AioRpcError | None]:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        failure = failure_of(error)
        return f"{failure.code.name} {failure.reason}", error
    return "OK", None


def validations(caplog: pytest.LogCaptureFixture) -> int:
    """ValidateAPIKey calls the apikeys server answered (its access log, one line each)."""
    return sum(1 for r in caplog.records if getattr(r, "method", None) == VALIDATE)


async def test_a_client_guessing_keys_gets_ten_401s_then_429_and_costs_no_more_lookups(
    suite: Suite, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    outcomes = []
    for _ in range(ALLOWANCE + 5):
        key = validators.new_api_key()  # well-formed, never issued: each one is a lookup
        outcomes.append(await refusal(suite.users.GetNetworkStats(STATS, metadata=as_key(key))))
    codes = [code for code, _ in outcomes]
    refused = outcomes[-1][1]

    assert codes == [INVALID] * ALLOWANCE + [LIMITED] * 5
    assert validations(caplog) == ALLOWANCE
    assert refused is not None
    assert quota_subjects(refused) == ["ip:127.0.0.1"]
    assert retry_delay_seconds(refused) == pytest.approx(60 / ALLOWANCE, abs=1)
    headers = error_headers(refused)
    assert headers["ratelimit-policy"] == '"auth_failures";q=10;w=60'
    assert headers["retry-after"] in {"5", "6"}


async def test_the_same_unknown_key_again_is_answered_from_the_cache_and_still_counted(
    suite: Suite, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    key = validators.new_api_key()
    codes = [
        (await refusal(suite.users.GetNetworkStats(STATS, metadata=as_key(key))))[0]
        for _ in range(ALLOWANCE + 2)
    ]

    assert codes == [INVALID] * ALLOWANCE + [LIMITED] * 2
    assert validations(caplog) == 1


async def test_a_wrong_internal_token_is_counted_like_a_wrong_key(suite: Suite) -> None:
    wrong = (("x-r3mes-internal-token", "not-the-token"),)
    request = credits_pb2.GetCreditsTotalRequest()
    codes = [
        (await refusal(suite.credits.GetCreditsTotal(request, metadata=wrong)))[0]
        for _ in range(ALLOWANCE + 2)
    ]

    assert codes == ["UNAUTHENTICATED BAD_INTERNAL_TOKEN"] * ALLOWANCE + [LIMITED] * 2


async def test_a_key_issued_after_a_guess_was_refused_works_at_once(suite: Suite) -> None:
    guess = validators.new_api_key()
    before = await refusal(suite.users.GetNetworkStats(STATS, metadata=as_key(guess)))
    issued = (await issue_key(suite.apikeys, new_wallet_address())).secret
    after = await refusal(suite.users.GetNetworkStats(STATS, metadata=as_key(issued)))

    assert (before[0], after[0]) == (INVALID, "OK")
