"""Wallet addresses: bech32 with the `remes` prefix, BIP-173 vectors re-encoded, malformed ones."""

from __future__ import annotations

import bech32
import pytest

from services.core import validators
from services.core.validators import InvalidValue

# --- helpers ------------------------------------------------------------------------------------


def to_words(payload: bytes) -> list[int]:
    words = bech32.convertbits(payload, 8, 5)
    assert words is not None
    return words


def encode(hrp: str, payload: bytes) -> str:
    encoded: str = bech32.bech32_encode(hrp, to_words(payload))
    return encoded


def encode_words(hrp: str, words: list[int]) -> str:
    encoded: str = bech32.bech32_encode(hrp, words)
    return encoded


def encode_bech32m(hrp: str, words: list[int]) -> str:
    """BIP-350's checksum, which the bech32 package does not implement."""
    values = [*bech32.bech32_hrp_expand(hrp), *words, 0, 0, 0, 0, 0, 0]
    polymod: int = bech32.bech32_polymod(values) ^ 0x2BC830A3
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(bech32.CHARSET[word] for word in [*words, *checksum])


def decode_words(vector: str) -> tuple[str, list[int]]:
    hrp, words = bech32.bech32_decode(vector)
    assert hrp is not None, vector
    assert words is not None
    return hrp, words


ACCOUNT = bytes(range(1, 21))
ADDRESS = encode("remes", ACCOUNT)

# --- wallet addresses: BIP-173 vectors ------------------------------------------------------------

BIP173_VALID = [
    "A12UEL5L",
    "a12uel5l",
    "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
    "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
    "11qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqc8247j",
    "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
    "?1ezyfcl",
]

# Each vector with whether its data, re-encoded under `remes`, is an address: only the one whose
# data is 32 words (160 bits = 20 bytes) is; the rest carry 0, 30 or 51 bytes.
BIP173_VALID_AS_ADDRESS = [(vector, vector.startswith("abcdef1")) for vector in BIP173_VALID]

BIP173_INVALID = [
    "\x201nwldj5",  # HRP character out of range
    "\x7f1axkwrx",  # HRP character out of range
    "\x801eym55h",  # HRP character out of range
    "an84characterslonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1569pvx",
    "pzry9x0s0muk",  # no separator
    "1pzry9x0s0muk",  # empty HRP
    "x1b4n0q5v",  # invalid data character
    "li1dgmt3",  # too short checksum
    "de1lg7wt\xff",  # invalid character in checksum
    "A1G7SGD8",  # checksum calculated with the uppercase form of the HRP
    "10a06t8",  # empty HRP
    "1qzzfhee",  # empty HRP
]


@pytest.mark.parametrize("vector", BIP173_VALID)
def test_a_bip173_valid_vector_re_encoded_as_remes_passes_the_checksum_level(vector: str) -> None:
    _, words = decode_words(vector)
    assert validators.bech32_data(encode_words("remes", words)) == tuple(words)


@pytest.mark.parametrize(("vector", "is_address"), BIP173_VALID_AS_ADDRESS)
def test_a_bip173_valid_vector_re_encoded_is_an_address_only_with_a_20_or_32_byte_payload(
    vector: str, is_address: bool
) -> None:
    _, words = decode_words(vector)
    address = encode_words("remes", words)
    payload = bech32.convertbits(words, 5, 8, False)
    assert is_address == (payload is not None and len(payload) in (20, 32) and len(address) <= 90)
    if payload is not None and is_address:
        assert validators.wallet_address(address) == address
        assert validators.wallet_payload(address) == bytes(payload)
    else:
        with pytest.raises(InvalidValue):
            validators.wallet_address(address)


@pytest.mark.parametrize("vector", BIP173_INVALID)
def test_a_bip173_invalid_vector_is_rejected_as_a_wallet(vector: str) -> None:
    with pytest.raises(InvalidValue):
        validators.wallet_address(vector)


@pytest.mark.parametrize("vector", [v for v in BIP173_INVALID if not v.startswith("an84")])
def test_a_bip173_invalid_vector_is_rejected_by_the_checksum_level_even_under_its_own_prefix(
    vector: str,
) -> None:
    with pytest.raises(InvalidValue):
        validators.bech32_data(vector, hrp=vector.rpartition("1")[0].lower())


def test_the_uppercase_hrp_vector_fails_the_checksum_once_lowercased() -> None:
    with pytest.raises(InvalidValue, match="checksum"):
        validators.bech32_data("a1g7sgd8", hrp="a")


# --- wallet addresses: our own rules ------------------------------------------------------------


def test_a_20_byte_remes_address_is_accepted_and_returned_unchanged() -> None:
    assert validators.wallet_address(ADDRESS) == ADDRESS
    assert validators.wallet_payload(ADDRESS) == ACCOUNT


def test_a_32_byte_remes_address_is_accepted() -> None:
    address = encode("remes", bytes(range(32)))
    assert validators.wallet_payload(address) == bytes(range(32))


@pytest.mark.parametrize("size", [0, 1, 19, 21, 31, 33, 40])
def test_a_payload_of_another_size_is_rejected(size: int) -> None:
    with pytest.raises(InvalidValue, match="20- or 32-byte"):
        validators.wallet_address(encode("remes", bytes(size)))


def test_a_wallet_with_another_prefix_is_rejected() -> None:
    with pytest.raises(InvalidValue, match="must start with remes1"):
        validators.wallet_address(encode("cosmos", ACCOUNT))


@pytest.mark.parametrize("hrp", ["remess", "reme", "rremes", "r3mes"])
def test_a_wallet_with_a_near_miss_prefix_is_rejected(hrp: str) -> None:
    with pytest.raises(InvalidValue):
        validators.wallet_address(encode(hrp, ACCOUNT))


def test_an_uppercase_wallet_is_rejected_although_bip173_allows_it() -> None:
    with pytest.raises(InvalidValue, match="lowercase"):
        validators.wallet_address(ADDRESS.upper())


def test_a_mixed_case_wallet_is_rejected() -> None:
    with pytest.raises(InvalidValue, match="lowercase"):
        validators.wallet_address(ADDRESS[:10] + ADDRESS[10:].upper())


def test_a_wallet_with_a_bad_checksum_is_rejected_whichever_character_is_changed() -> None:
    for position in range(len("remes1"), len(ADDRESS)):
        replaced = bech32.CHARSET[(bech32.CHARSET.index(ADDRESS[position]) + 1) % 32]
        mistyped = ADDRESS[:position] + replaced + ADDRESS[position + 1 :]
        with pytest.raises(InvalidValue, match="checksum"):
            validators.wallet_address(mistyped)


@pytest.mark.parametrize("cut", [1, 6, 10, len(ADDRESS) - 7])
def test_a_truncated_wallet_is_rejected(cut: int) -> None:
    with pytest.raises(InvalidValue):
        validators.wallet_address(ADDRESS[:-cut])


def test_an_empty_wallet_is_rejected() -> None:
    with pytest.raises(InvalidValue, match="empty"):
        validators.wallet_address("")


def test_a_wallet_longer_than_90_characters_is_rejected() -> None:
    too_long = encode_words("remes", [0] * 80)
    assert len(too_long) == 92
    assert validators.bech32_data(too_long)  # the checksum itself is fine
    with pytest.raises(InvalidValue, match="at most 90"):
        validators.wallet_address(too_long)


def test_a_wallet_with_a_bech32m_checksum_is_rejected() -> None:
    with pytest.raises(InvalidValue, match="bech32m"):
        validators.wallet_address(encode_bech32m("remes", to_words(ACCOUNT)))


def test_a_wallet_with_nonzero_padding_bits_is_rejected() -> None:
    words = to_words(bytes(32))  # 256 bits in 52 words: 4 spare bits
    words[-1] = 1
    with pytest.raises(InvalidValue, match="padding"):
        validators.wallet_address(encode_words("remes", words))


def test_a_wallet_with_a_spare_data_word_is_rejected() -> None:
    with pytest.raises(InvalidValue, match="padding"):
        validators.wallet_address(encode_words("remes", [*to_words(ACCOUNT), 0]))


@pytest.mark.parametrize(
    "value",
    [
        "remesqpzry9x8gf2tvdw0s3jn54khce6mua7l",
        ADDRESS.replace("remes1", "remes1b", 1),
        " " + ADDRESS,
        ADDRESS + "\n",
        "remes1",
    ],
)
def test_a_malformed_wallet_is_rejected(value: str) -> None:
    with pytest.raises(InvalidValue):
        validators.wallet_address(value)
