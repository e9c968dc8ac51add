"""The central validators: API keys, names, free text, idempotency keys and integers."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from services.core import validators
from services.core.validators import InvalidValue

# --- API keys -----------------------------------------------------------------------------------


def test_a_new_api_key_passes_and_has_the_documented_shape() -> None:
    key = validators.new_api_key()
    assert validators.api_key(key) == key
    assert key.startswith(validators.API_KEY_PREFIX)
    assert len(key) == validators.API_KEY_LENGTH == 44
    assert key[6:].isascii()
    assert key[6:].isalnum()


def test_new_api_keys_differ() -> None:
    assert len({validators.new_api_key() for _ in range(100)}) == 100


def test_a_known_api_key_keeps_passing_so_external_scanners_stay_compatible() -> None:
    # Body of 32 zeros; CRC32 0xa0f292d0 = 2700251856 in base62 (0-9A-Za-z) is "2wjyrI".
    assert validators.api_key("r3mes_" + "0" * 32 + "2wjyrI")


def test_an_api_key_with_any_one_changed_character_fails_the_checksum() -> None:
    key = validators.new_api_key()
    for position in range(len(validators.API_KEY_PREFIX), len(key)):
        replaced = "1" if key[position] == "0" else "0"
        with pytest.raises(InvalidValue, match="checksum") as caught:
            validators.api_key(key[:position] + replaced + key[position + 1 :])
        assert key[6:38] not in str(caught.value)


@pytest.mark.parametrize("prefix", ["", "r3mes", "R3MES_", "r3mez_", "remes_", "sk_"])
def test_an_api_key_with_a_wrong_prefix_is_rejected(prefix: str) -> None:
    key = validators.new_api_key()
    with pytest.raises(InvalidValue, match="must start with r3mes_"):
        validators.api_key(prefix + key[6:])


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda key: key[:-1], "44 characters"),
        (lambda key: key + "0", "44 characters"),
        (lambda key: key[:20] + "-" + key[21:], "letters and digits"),
        (lambda key: key[:20] + "é" + key[21:], "letters and digits"),
        (lambda key: key[:-1] + "\n", "letters and digits"),
    ],
)
def test_a_malformed_api_key_is_rejected_without_quoting_it(
    mutate: Callable[[str], str], problem: str
) -> None:
    key = validators.new_api_key()
    with pytest.raises(InvalidValue, match=problem) as caught:
        validators.api_key(mutate(key))
    assert key[6:38] not in str(caught.value)


def test_the_api_key_body_holds_at_least_190_bits() -> None:
    assert 32 * math.log2(62) >= 190


# --- names --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["a", "My key", "prod-key_1.2", "Ünïcödé naïve", "日本語の鍵", "हिन्दी", "ключ 2", "a" * 64],
)
def test_an_ordinary_name_is_accepted(value: str) -> None:
    assert validators.name(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "<script>alert(1)</script>",
        "a&b",
        'say "hi"',
        "it's",
        "a>b",
        "tab\tname",
        "new\nline",
        "nul\x00",
        "key 🔑",
        "a/b",
        "no\u00a0break",
        "rtl\u202eoverride",
    ],
)
def test_a_name_with_a_character_outside_the_allowlist_is_rejected(value: str) -> None:
    with pytest.raises(InvalidValue, match="may contain only"):
        validators.name(value)


@pytest.mark.parametrize("value", [" lead", "trail ", " "])
def test_a_name_with_a_leading_or_trailing_space_is_rejected(value: str) -> None:
    with pytest.raises(InvalidValue, match="space"):
        validators.name(value)


def test_an_empty_name_is_rejected() -> None:
    with pytest.raises(InvalidValue, match="empty"):
        validators.name("")


def test_a_name_longer_than_its_maximum_is_rejected() -> None:
    with pytest.raises(InvalidValue, match="at most 64"):
        validators.name("a" * 65)
    with pytest.raises(InvalidValue, match="at most 3"):
        validators.name("abcd", max_length=3)


def test_a_name_starting_with_a_combining_mark_is_rejected() -> None:
    with pytest.raises(InvalidValue, match="combining"):
        validators.name("\u0301a")


# --- free text ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "how do I create a table; thanks",
        "SELECT * FROM users -- just asking",
        "'; DROP TABLE users; --",
        "<b>hi</b>",
        "line one\nline two\n\tindented",
        "Ünïcödé, 日本語, emoji 👩‍💻 with a zero-width joiner",
        "",
        "x" * 4000,
    ],
)
def test_ordinary_free_text_is_accepted_verbatim(value: str) -> None:
    assert validators.free_text(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "nul \x00",
        "escape \x1b[31mred",
        "bidi \u202eoverride",
        "isolate \u2066x\u2069",
        "bell \x07",
        "del \x7f",
        "cr \r\n",
        "zero\u200bwidth",
        "bom \ufeff",
        "tag \U000e0041",
    ],
)
def test_free_text_with_a_control_or_invisible_format_character_is_rejected(value: str) -> None:
    with pytest.raises(InvalidValue, match="control"):
        validators.free_text(value)


def test_free_text_longer_than_its_maximum_is_rejected() -> None:
    with pytest.raises(InvalidValue, match="at most 4000"):
        validators.free_text("x" * 4001)
    with pytest.raises(InvalidValue, match="at most 10"):
        validators.free_text("x" * 11, max_length=10)


# --- idempotency keys ---------------------------------------------------------------------------


# A fixed UUID: pytest-xdist workers must collect the same test ids.
@pytest.mark.parametrize(
    "value", ["a", "order:42-retry_1.x", "3e522cd7-a53b-4d93-b702-a47b0d0465da", "K" * 128]
)
def test_a_well_formed_idempotency_key_is_accepted(value: str) -> None:
    assert validators.idempotency_key(value) == value


@pytest.mark.parametrize("value", ["", "K" * 129, "has space", "semi;colon", "end\n", "ünï", "a/b"])
def test_a_malformed_idempotency_key_is_rejected(value: str) -> None:
    with pytest.raises(InvalidValue):
        validators.idempotency_key(value)
