"""The API-key authenticator's own rules: which headers carry a key, what is asked of the apikeys
service and when, and what a cached answer may no longer say. The apikeys service is stood in
for by a validator that counts the questions (the integration tests use the real one)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from services.apikeys.authentication import APIKeyAuthenticator
from services.apikeys.domain import UNKNOWN_KEY, APIKeyState, Validation
from services.apikeys.key_cache import KeyCheckCache, KeyInvalidations
from services.core import validators
from services.core.auth import PrincipalKind
from services.core.errors import Unauthenticated, Unavailable
from services.core.testing import FakeClock, FakeMonotonic

WALLET = "remes1nmxc98ww6mdvm6h4anee0pxa8cgdezfclgsdxk"
TTL = 5.0


class CountingValidator:
    def __init__(self, answer: Validation | None = None) -> None:
        self.answer = answer or Validation(APIKeyState.ACTIVE, WALLET, "key-1")
        self.asked = 0
        self.release = asyncio.Event()
        self.release.set()

    async def validate(self, secret: str) -> Validation:
        self.asked += 1
        await self.release.wait()
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def authenticator(
    validator: CountingValidator, ticks: FakeMonotonic, clock: FakeClock
) -> tuple[APIKeyAuthenticator, KeyInvalidations]:
    invalidations = KeyInvalidations(KeyCheckCache(TTL, 100, timer=ticks), None, "unused")
    return APIKeyAuthenticator(validator, invalidations, clock), invalidations


@pytest.mark.parametrize(
    "headers",
    [
        lambda key: {"x-api-key": key},
        lambda key: {"authorization": f"Bearer {key}"},
        lambda key: {"authorization": f"bearer {key}"},
    ],
    ids=["x-api-key", "Bearer", "bearer"],
)
async def test_a_key_in_either_header_is_the_wallet_principal(
    headers: object, ticks: FakeMonotonic, clock: FakeClock
) -> None:
    auth, _ = authenticator(CountingValidator(), ticks, clock)
    key = validators.new_api_key()

    principal = await auth.authenticate(headers(key))  # type: ignore[operator]

    assert principal is not None
    assert (principal.kind, principal.wallet_address) == (PrincipalKind.WALLET, WALLET)


@pytest.mark.parametrize("metadata", [{}, {"authorization": "Basic dXNlcjpwYXNz"}])
async def test_a_call_without_a_key_is_not_this_authenticators_business(
    metadata: dict[str, str], ticks: FakeMonotonic, clock: FakeClock
) -> None:
    validator = CountingValidator()
    auth, _ = authenticator(validator, ticks, clock)

    assert await auth.authenticate(metadata) is None
    assert validator.asked == 0


async def test_a_malformed_key_is_refused_without_asking(
    ticks: FakeMonotonic, clock: FakeClock
) -> None:
    validator = CountingValidator()
    auth, _ = authenticator(validator, ticks, clock)

    with pytest.raises(Unauthenticated) as raised:
        await auth.authenticate({"x-api-key": validators.new_api_key()[:-1] + "!"})

    assert raised.value.reason == "API_KEY_INVALID"
    assert validator.asked == 0


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (None, "API_KEY_INVALID"),
        (APIKeyState.REVOKED, "API_KEY_REVOKED"),
        (APIKeyState.EXPIRED, "API_KEY_EXPIRED"),
    ],
)
async def test_an_unusable_key_is_unauthenticated_with_the_reason(
    state: APIKeyState | None, reason: str, ticks: FakeMonotonic, clock: FakeClock
) -> None:
    auth, _ = authenticator(CountingValidator(Validation(state)), ticks, clock)

    with pytest.raises(Unauthenticated) as raised:
        await auth.authenticate({"x-api-key": validators.new_api_key()})

    assert raised.value.reason == reason


async def test_an_answer_is_kept_for_the_ttl_and_asked_again_after(
    ticks: FakeMonotonic, clock: FakeClock
) -> None:
    validator = CountingValidator()
    auth, _ = authenticator(validator, ticks, clock)
    key = validators.new_api_key()

    for _ in range(3):
        await auth.check(key)
    ticks.now += TTL - 0.01
    await auth.check(key)
    asked_within_ttl = validator.asked
    ticks.now += 0.02
    await auth.check(key)

    assert (asked_within_ttl, validator.asked) == (1, 2)


async def test_a_refusal_is_kept_for_its_own_shorter_ttl(
    ticks: FakeMonotonic, clock: FakeClock
) -> None:
    validator = CountingValidator(UNKNOWN_KEY)
    cache: KeyCheckCache[Validation] = KeyCheckCache(TTL, 100, timer=ticks, refused_ttl_seconds=1)
    auth = APIKeyAuthenticator(validator, KeyInvalidations(cache, None, "unused"), clock)
    unknown = validators.new_api_key()

    for _ in range(3):
        await auth.check(unknown)
    asked_within_ttl = validator.asked
    ticks.now += 1.01
    await auth.check(unknown)

    assert (asked_within_ttl, validator.asked) == (1, 2)


async def test_a_flood_of_unknown_keys_does_not_push_a_valid_keys_answer_out(
    ticks: FakeMonotonic, clock: FakeClock
) -> None:
    valid = CountingValidator()
    cache: KeyCheckCache[Validation] = KeyCheckCache(TTL, 3, timer=ticks)
    auth = APIKeyAuthenticator(valid, KeyInvalidations(cache, None, "unused"), clock)
    key = validators.new_api_key()
    await auth.check(key)

    valid.answer = UNKNOWN_KEY
    for _ in range(10):
        await auth.check(validators.new_api_key())
    valid.answer = Validation(APIKeyState.ACTIVE, WALLET, "key-1")
    asked_before = valid.asked
    again = await auth.check(key)

    assert (again.state, valid.asked - asked_before) == (APIKeyState.ACTIVE, 0)


async def test_calls_that_miss_at_once_share_one_question(
    ticks: FakeMonotonic, clock: FakeClock
) -> None:
    validator = CountingValidator()
    validator.release.clear()
    auth, _ = authenticator(validator, ticks, clock)
    key = validators.new_api_key()

    waiting = [asyncio.ensure_future(auth.check(key)) for _ in range(10)]
    await asyncio.sleep(0)
    validator.release.set()
    answers = await asyncio.gather(*waiting)

    assert validator.asked == 1
    assert {answer.state for answer in answers} == {APIKeyState.ACTIVE}


async def test_a_withdrawn_key_is_asked_about_again(ticks: FakeMonotonic, clock: FakeClock) -> None:
    validator = CountingValidator()
    auth, invalidations = authenticator(validator, ticks, clock)
    key = validators.new_api_key()
    await auth.check(key)

    await invalidations.key_withdrawn("key-1")
    validator.answer = Validation(APIKeyState.REVOKED)

    assert (await auth.check(key)).state is APIKeyState.REVOKED
    assert validator.asked == 2


async def test_an_answer_in_flight_while_its_key_is_withdrawn_is_not_kept(
    ticks: FakeMonotonic, clock: FakeClock
) -> None:
    validator = CountingValidator()
    validator.release.clear()
    auth, invalidations = authenticator(validator, ticks, clock)
    key = validators.new_api_key()

    in_flight = asyncio.ensure_future(auth.check(key))
    await asyncio.sleep(0)
    await invalidations.key_withdrawn("key-1")
    validator.release.set()
    await in_flight
    await auth.check(key)

    assert validator.asked == 2


async def test_a_cached_answer_is_not_used_past_the_keys_expiry(
    ticks: FakeMonotonic, clock: FakeClock
) -> None:
    validator = CountingValidator(
        Validation(APIKeyState.ACTIVE, WALLET, "key-1", clock.now + timedelta(seconds=1))
    )
    auth, _ = authenticator(validator, ticks, clock)
    key = validators.new_api_key()
    await auth.check(key)

    clock.advance(seconds=1)
    validator.answer = Validation(APIKeyState.EXPIRED)

    assert (await auth.check(key)).state is APIKeyState.EXPIRED


async def test_when_the_apikeys_service_cannot_answer_nothing_is_cached(
    ticks: FakeMonotonic, clock: FakeClock
) -> None:
    validator = CountingValidator()
    validator.answer = Unavailable("down", reason="API_KEYS_UNAVAILABLE")  # type: ignore[assignment]
    auth, _ = authenticator(validator, ticks, clock)
    key = validators.new_api_key()

    for _ in range(2):
        with pytest.raises(Unavailable):
            await auth.check(key)

    assert validator.asked == 2
