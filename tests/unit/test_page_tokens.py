"""Page tokens, no I/O: opaque, signed, bound to their request and their method."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from r3mes.apikeys.v1 import apikeys_pb2
from r3mes.credits.v1 import credits_pb2
from r3mes.mining.v1 import mining_pb2

from services.core.errors import InvalidArgument
from services.core.page_tokens import PageTokens, page_size_of
from services.core.pagination import Page, PageRequest

TOKENS = PageTokens(b"unit-test-page-token-secret-0123")
WALLET = "remes1qqqsyqcyq5rqwzqfpg9scrgwpugpzysnuf2xtm"
CURSOR = (datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), 42, "id-7")


def _ledger(**fields: object) -> credits_pb2.ListLedgerEntriesRequest:
    return credits_pb2.ListLedgerEntriesRequest(wallet_address=WALLET, **fields)  # type: ignore[arg-type]


def _token_after(request: credits_pb2.ListLedgerEntriesRequest) -> str:
    return TOKENS.next_token(request, Page(items=[1], next_after=CURSOR))


def _bad_field(request: object) -> tuple[str, str]:
    with pytest.raises(InvalidArgument) as raised:
        TOKENS.request_of(request)  # type: ignore[arg-type]
    [violation] = raised.value.details.field_violations
    return violation.field, violation.description


def test_a_token_brings_back_the_cursor_it_was_issued_with() -> None:
    token = _token_after(_ledger(page_size=5))

    assert TOKENS.request_of(_ledger(page_size=5, page_token=token)) == PageRequest(5, CURSOR)


def test_the_last_page_has_no_next_token() -> None:
    assert TOKENS.next_token(_ledger(), Page(items=[1], next_after=None)) == ""


def test_a_first_page_request_has_no_cursor_and_the_declared_default_size() -> None:
    assert TOKENS.request_of(_ledger()) == PageRequest(50, None)


def test_a_token_for_another_wallet_is_refused_naming_page_token() -> None:
    token = _token_after(_ledger())
    other = credits_pb2.ListLedgerEntriesRequest(
        wallet_address="remes1w34hf4t2ryxe5nae2ldqqkeh6c5mvpgwddfyxu", page_token=token
    )

    field, description = _bad_field(other)

    assert field == "page_token"
    assert "different request" in description


def test_a_token_of_another_method_is_refused() -> None:
    token = _token_after(_ledger())

    assert (
        _bad_field(apikeys_pb2.ListAPIKeysRequest(wallet_address=WALLET, page_token=token))[0]
        == "page_token"
    )


@pytest.mark.parametrize("position", [0, 5, 20, -3])
def test_a_token_with_any_character_changed_is_refused(position: int) -> None:
    token = _token_after(_ledger())
    index = position % len(token)
    flipped = "A" if token[index] != "A" else "B"
    tampered = token[:index] + flipped + token[index + 1 :]

    assert _bad_field(_ledger(page_token=tampered))[0] == "page_token"


@pytest.mark.parametrize("garbage", ["x", "not.a.token", "....", "%%%", "ab.cd"])
def test_garbage_is_refused_as_a_bad_page_token(garbage: str) -> None:
    assert _bad_field(_ledger(page_token=garbage))[0] == "page_token"


def test_a_token_signed_with_another_secret_is_refused() -> None:
    foreign = PageTokens(b"some-other-replica-secret-789012")
    token = foreign.next_token(_ledger(), Page(items=[1], next_after=CURSOR))

    assert _bad_field(_ledger(page_token=token))[0] == "page_token"


def test_an_explicit_page_size_wins_over_the_default() -> None:
    assert page_size_of(mining_pb2.ListBlocksRequest(page_size=7)) == 7
    assert page_size_of(mining_pb2.ListBlocksRequest()) == 50
