"""Request validation from proto annotations, on real request messages of our APIs."""

from __future__ import annotations

import pytest
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from r3mes.apikeys.v1 import apikeys_pb2
from r3mes.credits.v1 import credits_pb2
from r3mes.mining.v1 import mining_pb2
from r3mes.users.v1 import users_pb2

from services.core.interceptors.validation import find_violations
from services.core.testing import new_wallet_address

WALLET = new_wallet_address()
MAX_AMOUNT = 10**15


def _bad_fields(message: Message) -> dict[str, str]:
    violations = find_violations(message)
    found = {v.field: v.description for v in violations}
    assert len(found) == len(violations), "a field was reported twice"
    return found


def _stats(
    wallet_address: str = WALLET, idempotency_key: str = "report-1", earned_micro_credits: int = 0
) -> mining_pb2.RecordMiningStatsRequest:
    return mining_pb2.RecordMiningStatsRequest(
        wallet_address=wallet_address,
        idempotency_key=idempotency_key,
        earned_micro_credits=earned_micro_credits,
    )


# --- required fields and formats ------------------------------------------------------------------


def test_a_valid_request_has_no_violations() -> None:
    assert find_violations(users_pb2.CreateUserRequest(wallet_address=WALLET)) == []


def test_a_missing_required_field_is_reported_as_required() -> None:
    assert _bad_fields(users_pb2.CreateUserRequest()) == {"wallet_address": "is required"}


@pytest.mark.parametrize(
    ("address", "description"),
    [
        ("remes1notanaddress", "contains a character outside the bech32 alphabet"),
        (WALLET.upper(), "must be lowercase"),
        ("cosmos1qypqxpq9qcrsszg2pvxq6rs0zqg3yyc5lzv7xu", "must start with remes1"),
        (WALLET[:-1] + ("q" if WALLET[-1] != "q" else "p"), "has a bad checksum"),
    ],
    ids=["outside-alphabet", "uppercase", "other-prefix", "mistyped"],
)
def test_a_malformed_wallet_is_reported_with_what_is_wrong(address: str, description: str) -> None:
    bad = _bad_fields(users_pb2.GetUserRequest(wallet_address=address))

    assert list(bad) == ["wallet_address"]
    assert bad["wallet_address"].startswith(description)


def test_free_text_may_look_like_sql_or_markup_but_not_hold_control_characters() -> None:
    def grant(description: str) -> credits_pb2.GrantCreditsRequest:
        return credits_pb2.GrantCreditsRequest(
            wallet_address=WALLET,
            amount_micro_credits=1,
            description=description,
            idempotency_key="grant-1",
        )

    assert _bad_fields(grant("Robert'); DROP TABLE credits;-- <b>bonus</b>")) == {}
    assert _bad_fields(grant("x" * 256)) == {}
    assert _bad_fields(grant("x" * 257)) == {"description": "must be at most 256 characters"}
    assert list(_bad_fields(grant("line\x00break"))) == ["description"]


def test_a_name_may_not_hold_markup() -> None:
    request = apikeys_pb2.CreateAPIKeyRequest(wallet_address=WALLET, name="<script>x</script>")

    assert list(_bad_fields(request)) == ["name"]


def test_an_idempotency_key_outside_its_alphabet_is_rejected() -> None:
    assert list(_bad_fields(_stats(idempotency_key="two words"))) == ["idempotency_key"]
    assert _bad_fields(_stats(idempotency_key="a:b.c-d_e")) == {}


@pytest.mark.parametrize(
    ("request_message", "field"),
    [
        (
            credits_pb2.ConfirmReservationRequest(reservation_id="r" * 65, idempotency_key="k"),
            "reservation_id",
        ),
        (
            credits_pb2.ListLedgerEntriesRequest(wallet_address=WALLET, page_token="t" * 513),
            "page_token",
        ),
        (apikeys_pb2.ValidateAPIKeyRequest(secret="r3mes_" + "x" * 300), "secret"),
    ],
)
def test_a_string_longer_than_its_max_length_is_rejected(
    request_message: Message, field: str
) -> None:
    assert list(_bad_fields(request_message)) == [field]


# --- integer bounds -------------------------------------------------------------------------------


@pytest.mark.parametrize("days", [1, 2, 364, 365])
def test_a_day_range_within_bounds_is_accepted(days: int) -> None:
    request = mining_pb2.GetHashrateHistoryRequest(wallet_address=WALLET, days=days)

    assert find_violations(request) == []


@pytest.mark.parametrize(
    ("days", "description"),
    [
        (0, "is required"),  # proto3: 0 is the same as unset
        (-1, "must be at least 1"),
        (366, "must be at most 365"),
        (2**31 - 1, "must be at most 365"),
    ],
)
def test_a_day_range_out_of_bounds_is_rejected(days: int, description: str) -> None:
    request = mining_pb2.GetHashrateHistoryRequest(wallet_address=WALLET, days=days)

    assert _bad_fields(request) == {"days": description}


@pytest.mark.parametrize(
    ("amount", "description"),
    [
        (1, None),
        (MAX_AMOUNT, None),
        (0, "is required"),
        (-5, "must be at least 1"),
        (MAX_AMOUNT + 1, f"must be at most {MAX_AMOUNT}"),
        (2**63 - 1, f"must be at most {MAX_AMOUNT}"),
    ],
)
def test_credit_amounts_are_bounded(amount: int, description: str | None) -> None:
    request = credits_pb2.DeductCreditsRequest(
        wallet_address=WALLET, amount_micro_credits=amount, idempotency_key="deduct-1"
    )

    expected = {} if description is None else {"amount_micro_credits": description}
    assert _bad_fields(request) == expected


def test_an_optional_amount_is_checked_when_set_even_to_zero() -> None:
    unset = credits_pb2.ConfirmReservationRequest(reservation_id="r-1", idempotency_key="c-1")
    zero = credits_pb2.ConfirmReservationRequest(
        reservation_id="r-1", idempotency_key="c-1", amount_micro_credits=0
    )

    assert _bad_fields(unset) == {}
    assert _bad_fields(zero) == {"amount_micro_credits": "must be at least 1"}


def test_an_optional_bound_field_left_at_zero_is_accepted_when_zero_is_allowed() -> None:
    request = credits_pb2.ReserveCreditsRequest(
        wallet_address=WALLET, amount_micro_credits=10, idempotency_key="hold-1"
    )

    assert _bad_fields(request) == {}
    request.ttl_seconds = 3601
    assert _bad_fields(request) == {"ttl_seconds": "must be at most 3600"}


def test_zero_is_a_value_not_an_absence_when_the_lower_bound_allows_it() -> None:
    assert _bad_fields(_stats(earned_micro_credits=0)) == {}
    assert _bad_fields(_stats(earned_micro_credits=-1)) == {
        "earned_micro_credits": "must be at least 0"
    }


# --- nested and repeated fields -------------------------------------------------------------------


def test_an_empty_required_list_is_required() -> None:
    assert _bad_fields(mining_pb2.BatchRecordMiningStatsRequest()) == {"requests": "is required"}


def test_entries_of_a_list_are_checked_and_named_by_their_index() -> None:
    request = mining_pb2.BatchRecordMiningStatsRequest(
        requests=[
            _stats(),
            _stats(wallet_address="remes1bad"),
            _stats(),
            _stats(idempotency_key="", earned_micro_credits=MAX_AMOUNT + 1),
        ]
    )

    bad = _bad_fields(request)

    assert list(bad) == [
        "requests[1].wallet_address",
        "requests[3].earned_micro_credits",
        "requests[3].idempotency_key",
    ]
    assert bad["requests[3].idempotency_key"] == "is required"


def test_a_required_message_field_must_be_set() -> None:
    def block(block_time: Timestamp | None = None) -> mining_pb2.RecordBlockRequest:
        return mining_pb2.RecordBlockRequest(
            height=1,
            block_hash="ab" * 32,
            miner_wallet_address=WALLET,
            idempotency_key="block-1",
            block_time=block_time,
        )

    assert _bad_fields(block()) == {"block_time": "is required"}
    assert _bad_fields(block(block_time=Timestamp(seconds=1_700_000_000))) == {}


# --- several at once ------------------------------------------------------------------------------


def test_every_violation_of_a_request_is_reported_together_in_field_order() -> None:
    request = credits_pb2.GrantCreditsRequest(
        wallet_address="remes1bad",
        amount_micro_credits=-1,
        description="tab\tis fine but bell\x07 is not",
        idempotency_key="has spaces",
    )

    assert list(_bad_fields(request)) == [
        "wallet_address",
        "amount_micro_credits",
        "description",
        "idempotency_key",
    ]


def test_an_empty_request_lists_each_required_field() -> None:
    assert _bad_fields(credits_pb2.GrantCreditsRequest()) == {
        "wallet_address": "is required",
        "amount_micro_credits": "is required",
        "idempotency_key": "is required",
    }
