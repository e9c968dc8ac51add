"""The apikeys use cases' rules through an in-memory unit of work: issuing, listing, revoking
and deleting keys, the per-wallet limit, and what a key validates as over time."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.apikeys.domain import APIKeyState, Validation, secret_digest
from services.apikeys.repository import APIKeysRepositories
from services.apikeys.usecases import APIKeysUseCases, KeyPolicy
from services.core import validators
from services.core.errors import R3mesError
from services.core.pagination import PageRequest
from services.core.testing import FakeClock
from tests.fakes.apikeys import APIKeysState, apikeys_unit_of_work
from tests.fakes.uow import FakeUnitOfWork
from tests.integration.apikeys_support import SigningWallet

WALLET = "remes1alice"
OTHER = "remes1bob"
LIMIT = 3

Unit = FakeUnitOfWork[APIKeysState, APIKeysRepositories]


class Withdrawn:
    """The key ids the use cases said were withdrawn, in order."""

    def __init__(self) -> None:
        self.key_ids: list[str] = []

    async def key_withdrawn(self, key_id: str) -> None:
        self.key_ids.append(key_id)


@pytest.fixture
def uow() -> Unit:
    return apikeys_unit_of_work()


@pytest.fixture
def withdrawn() -> Withdrawn:
    return Withdrawn()


@pytest.fixture
def use_cases(uow: Unit, clock: FakeClock, withdrawn: Withdrawn) -> APIKeysUseCases:
    policy = KeyPolicy(max_active_per_wallet=LIMIT, challenge_ttl=timedelta(minutes=5))
    return APIKeysUseCases(uow, clock, policy, withdrawn)


async def test_a_new_key_is_shown_once_and_only_its_digest_is_stored(
    use_cases: APIKeysUseCases, uow: Unit, clock: FakeClock
) -> None:
    issued = await use_cases.create_key(WALLET, "laptop", 30)

    validators.api_key(issued.secret)  # a well-formed key, checksum included
    key = issued.api_key
    assert (key.wallet_address, key.name, key.create_time) == (WALLET, "laptop", clock.now)
    assert key.expire_time == clock.now + timedelta(days=30)
    assert key.key_prefix == f"{issued.secret[:10]}...{issued.secret[-4:]}"
    assert uow.state.digests == {secret_digest(issued.secret): key.key_id}
    assert issued.secret not in repr(uow.state)


async def test_a_key_without_expiry_never_expires(
    use_cases: APIKeysUseCases, clock: FakeClock
) -> None:
    issued = await use_cases.create_key(WALLET, "server", None)
    clock.advance(days=3650)

    validation = await use_cases.validate(issued.secret)

    assert issued.api_key.expire_time is None
    assert validation.state is APIKeyState.ACTIVE


async def test_a_valid_key_names_its_wallet_and_key_and_its_use_is_recorded_on_flush(
    use_cases: APIKeysUseCases, uow: Unit, clock: FakeClock
) -> None:
    issued = await use_cases.create_key(WALLET, "k", 7)
    clock.advance(minutes=3)

    validation = await use_cases.validate(issued.secret)
    flushed = await use_cases.flush_usage()

    assert validation.state is APIKeyState.ACTIVE
    assert (validation.wallet_address, validation.key_id) == (WALLET, issued.api_key.key_id)
    assert validation.expire_time == issued.api_key.expire_time
    assert flushed == 1
    assert uow.state.keys[issued.api_key.key_id].last_used_time == clock.now
    assert await use_cases.flush_usage() == 0


async def test_a_key_expires_at_its_expire_time_without_any_job(
    use_cases: APIKeysUseCases, clock: FakeClock
) -> None:
    issued = await use_cases.create_key(WALLET, "k", 1)
    clock.advance(days=1, seconds=-1)
    before = await use_cases.validate(issued.secret)
    clock.advance(seconds=1)

    at_expiry = await use_cases.validate(issued.secret)

    assert before.state is APIKeyState.ACTIVE
    assert at_expiry == Validation(APIKeyState.EXPIRED)  # no wallet, no key id
    assert issued.api_key.state_at(clock.now) is APIKeyState.EXPIRED


async def test_unknown_and_malformed_keys_are_not_found(use_cases: APIKeysUseCases) -> None:
    unknown = await use_cases.validate(validators.new_api_key())
    malformed = await use_cases.validate("r3mes_not-a-key")

    assert unknown.state is None
    assert malformed.state is None


async def test_a_wallet_holds_at_most_the_limit_of_active_keys(
    use_cases: APIKeysUseCases, uow: Unit
) -> None:
    for n in range(LIMIT):
        await use_cases.create_key(WALLET, f"k{n}", None)
    await use_cases.create_key(OTHER, "theirs", None)  # another wallet's keys do not count

    with pytest.raises(R3mesError) as raised:
        await use_cases.create_key(WALLET, "one too many", None)

    assert raised.value.reason == "API_KEY_LIMIT_REACHED"
    [violation] = raised.value.details.quota_violations
    assert violation.subject == f"wallet:{WALLET}"
    assert len(uow.state.keys) == LIMIT + 1


async def test_revoked_and_expired_keys_leave_room_under_the_limit(
    use_cases: APIKeysUseCases, clock: FakeClock
) -> None:
    revoked = await use_cases.create_key(WALLET, "revoked", None)
    await use_cases.create_key(WALLET, "expiring", 1)
    await use_cases.create_key(WALLET, "kept", None)
    await use_cases.revoke_key(WALLET, revoked.api_key.key_id)
    await use_cases.create_key(WALLET, "in the revoked one's place", None)
    clock.advance(days=1)

    issued = await use_cases.create_key(WALLET, "in the expired one's place", None)

    assert issued.api_key.name == "in the expired one's place"


async def test_keys_are_listed_newest_first_one_page_after_another(
    use_cases: APIKeysUseCases, clock: FakeClock
) -> None:
    for name in ("oldest", "middle", "newest"):
        await use_cases.create_key(WALLET, name, None)
        clock.advance(minutes=1)
    await use_cases.create_key(OTHER, "not alice's", None)

    first = await use_cases.list_keys(WALLET, PageRequest(2))
    rest = await use_cases.list_keys(WALLET, PageRequest(2, first.next_after))

    assert [key.name for key in first.items] == ["newest", "middle"]
    assert [key.name for key in rest.items] == ["oldest"]
    assert rest.next_after is None


async def test_a_revoked_key_is_refused_and_revoking_it_again_keeps_the_first_time(
    use_cases: APIKeysUseCases, clock: FakeClock, withdrawn: Withdrawn
) -> None:
    issued = await use_cases.create_key(WALLET, "k", None)
    key_id = issued.api_key.key_id
    revoked_at = clock.now

    first = await use_cases.revoke_key(WALLET, key_id)
    clock.advance(hours=1)
    second = await use_cases.revoke_key(WALLET, key_id)

    assert first.revoke_time == second.revoke_time == revoked_at
    assert (await use_cases.validate(issued.secret)).state is APIKeyState.REVOKED
    assert withdrawn.key_ids == [key_id, key_id]


async def test_another_wallets_key_can_be_neither_revoked_nor_deleted(
    use_cases: APIKeysUseCases, uow: Unit, withdrawn: Withdrawn
) -> None:
    theirs = await use_cases.create_key(OTHER, "theirs", None)
    key_id = theirs.api_key.key_id
    before = uow.state

    reasons = []
    for attempt in (use_cases.revoke_key(WALLET, key_id), use_cases.delete_key(WALLET, key_id)):
        with pytest.raises(R3mesError) as raised:
            await attempt
        reasons.append(raised.value.reason)

    assert reasons == ["API_KEY_NOT_FOUND", "API_KEY_NOT_FOUND"]
    assert uow.state == before
    assert withdrawn.key_ids == []


async def test_a_deleted_key_is_gone_and_deleting_it_again_is_not_found(
    use_cases: APIKeysUseCases, withdrawn: Withdrawn
) -> None:
    issued = await use_cases.create_key(WALLET, "k", None)
    key_id = issued.api_key.key_id

    await use_cases.delete_key(WALLET, key_id)
    with pytest.raises(R3mesError) as raised:
        await use_cases.delete_key(WALLET, key_id)

    assert raised.value.reason == "API_KEY_NOT_FOUND"
    assert (await use_cases.validate(issued.secret)).state is None
    assert (await use_cases.list_keys(WALLET, PageRequest(10))).items == []
    assert withdrawn.key_ids == [key_id]


async def test_a_challenge_answered_by_its_wallet_issues_one_key_and_is_spent(
    use_cases: APIKeysUseCases,
) -> None:
    wallet = SigningWallet()
    challenge = await use_cases.create_challenge(wallet.address)
    signature = wallet.sign_arbitrary(challenge.message)

    issued = await use_cases.create_key_with_signature(
        wallet.address, challenge.challenge_id, wallet.pub_key, signature, "signed", None
    )
    with pytest.raises(R3mesError) as raised:
        await use_cases.create_key_with_signature(
            wallet.address, challenge.challenge_id, wallet.pub_key, signature, "again", None
        )

    assert issued.api_key.wallet_address == wallet.address
    assert raised.value.reason == "CHALLENGE_ALREADY_USED"


async def test_a_bad_signature_is_refused_and_still_spends_the_challenge(
    use_cases: APIKeysUseCases, uow: Unit
) -> None:
    wallet = SigningWallet()
    challenge = await use_cases.create_challenge(wallet.address)
    wrong = wallet.sign_arbitrary("something else")

    with pytest.raises(R3mesError) as raised:
        await use_cases.create_key_with_signature(
            wallet.address, challenge.challenge_id, wallet.pub_key, wrong, "k", None
        )

    assert raised.value.reason == "SIGNATURE_INVALID"
    assert uow.state.challenges[challenge.challenge_id].used
    assert uow.state.keys == {}


async def test_challenges_expire_and_are_swept_a_day_later(
    use_cases: APIKeysUseCases, uow: Unit, clock: FakeClock
) -> None:
    wallet = SigningWallet()
    challenge = await use_cases.create_challenge(wallet.address)
    clock.advance(minutes=5)

    with pytest.raises(R3mesError) as raised:
        await use_cases.create_key_with_signature(
            wallet.address,
            challenge.challenge_id,
            wallet.pub_key,
            wallet.sign_arbitrary(challenge.message),
            "late",
            None,
        )
    kept = await use_cases.sweep_challenges()
    clock.advance(days=1, seconds=1)
    swept = await use_cases.sweep_challenges()

    assert raised.value.reason == "CHALLENGE_EXPIRED"
    assert (kept, swept) == (0, 1)
    assert uow.state.challenges == {}
