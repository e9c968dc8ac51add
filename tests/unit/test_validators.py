"""The central validators: wallet addresses, API keys, names, text, integers and outbound URLs."""

from __future__ import annotations

import ipaddress
import math
import uuid
from collections.abc import Callable

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


@pytest.mark.parametrize("value", ["a", "order:42-retry_1.x", str(uuid.uuid4()), "K" * 128])
def test_a_well_formed_idempotency_key_is_accepted(value: str) -> None:
    assert validators.idempotency_key(value) == value


@pytest.mark.parametrize("value", ["", "K" * 129, "has space", "semi;colon", "end\n", "ünï", "a/b"])
def test_a_malformed_idempotency_key_is_rejected(value: str) -> None:
    with pytest.raises(InvalidValue):
        validators.idempotency_key(value)


# --- integers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1, 1_000_000, 10**15])
def test_a_positive_amount_within_bounds_is_accepted(value: int) -> None:
    assert validators.positive_amount(value) == value


@pytest.mark.parametrize(("value", "problem"), [(0, "positive"), (-1, "positive")])
def test_a_zero_or_negative_amount_is_rejected(value: int, problem: str) -> None:
    with pytest.raises(InvalidValue, match=problem):
        validators.positive_amount(value)


def test_a_too_large_amount_is_rejected() -> None:
    with pytest.raises(InvalidValue, match="at most"):
        validators.positive_amount(10**15 + 1)
    with pytest.raises(InvalidValue, match="at most 10"):
        validators.positive_amount(11, maximum=10)


def test_a_boolean_is_not_an_amount() -> None:
    with pytest.raises(InvalidValue, match="integer"):
        validators.positive_amount(True)


@pytest.mark.parametrize("days", [1, 30, 365])
def test_a_day_range_from_1_to_365_is_accepted(days: int) -> None:
    assert validators.day_range(days) == days


@pytest.mark.parametrize("days", [0, -1, 366, 10**9])
def test_a_day_range_outside_1_to_365_is_rejected(days: int) -> None:
    with pytest.raises(InvalidValue, match="between 1 and 365"):
        validators.day_range(days)


def test_int_range_includes_both_bounds() -> None:
    assert validators.int_range(-5, -5, 5) == -5
    assert validators.int_range(5, -5, 5) == 5
    with pytest.raises(InvalidValue):
        validators.int_range(6, -5, 5)


@pytest.mark.parametrize(
    ("value", "kwargs", "expected"),
    [(0, {}, 50), (0, {"default": 20}, 20), (1, {}, 1), (100, {}, 100), (10, {"maximum": 10}, 10)],
)
def test_a_page_size_of_zero_means_the_default_and_others_pass_through(
    value: int, kwargs: dict[str, int], expected: int
) -> None:
    assert validators.page_size(value, **kwargs) == expected


def test_a_negative_page_size_is_rejected() -> None:
    with pytest.raises(InvalidValue, match="negative"):
        validators.page_size(-1)


def test_a_page_size_above_the_maximum_is_rejected_rather_than_capped() -> None:
    with pytest.raises(InvalidValue, match="at most 100"):
        validators.page_size(101)
    with pytest.raises(InvalidValue, match="at most 10"):
        validators.page_size(11, maximum=10)


# --- outbound URLs ------------------------------------------------------------------------------

NON_PUBLIC_LITERALS = [
    # loopback in every notation a resolver or browser accepts
    "127.0.0.1",
    "127.1",
    "127.0.1",
    "2130706433",
    "0177.0.0.1",
    "0177.1",
    "017700000001",
    "0x7f.1",
    "0x7f.0.0.1",
    "0x7f000001",
    "0X7F.0X0.0X0.0X1",
    "127.0.0.1.",
    "127.255.255.254",
    "[::1]",
    "[0:0:0:0:0:0:0:1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[0:0:0:0:0:ffff:7f00:1]",
    "[::127.0.0.1]",
    "[64:ff9b::7f00:1]",
    "[2002:7f00:1::]",
    # unspecified
    "0.0.0.0",  # noqa: S104 - a URL host under test, not a bind address
    "0",
    "0x",
    "[::]",
    # private
    "10.0.0.1",
    "012.0.0.1",
    "167772161",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "192.168.257",
    "100.64.0.1",
    "[fc00::1]",
    "[fd12:3456::1]",
    "[::ffff:10.0.0.1]",
    "[::ffff:c0a8:101]",
    # link-local, including the cloud metadata service
    "169.254.169.254",
    "2852039166",
    "0xa9fea9fe",
    "0251.0376.0251.0376",
    "0xa9.0xfe.0xa9.0xfe",
    "169.254.43518",
    "[::ffff:169.254.169.254]",
    "[::ffff:a9fe:a9fe]",
    "[64:ff9b::a9fe:a9fe]",
    "[fd00:ec2::254]",
    "[fe80::1]",
    "[fe80::a9fe:a9fe]",
    # multicast, broadcast, reserved, documentation, site-local, Teredo
    "224.0.0.1",
    "[ff02::1]",
    "[ff0e::1]",
    "255.255.255.255",
    "4294967295",
    "240.0.0.1",
    "192.0.2.1",
    "198.18.0.1",
    "[2001:db8::1]",
    "[fec0::1]",
    "[2001:0:4136:e378:8000:63bf:3fff:fdd2]",
]


@pytest.mark.parametrize("host", NON_PUBLIC_LITERALS)
def test_a_url_to_a_non_public_address_is_rejected_in_any_notation(host: str) -> None:
    with pytest.raises(InvalidValue, match="non-public"):
        validators.parse_outbound_url(f"https://{host}/hook")


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://8.8.8.8/", "8.8.8.8"),
        ("https://134744072/", "8.8.8.8"),
        ("https://0x8.0x8.0x8.0x8/", "8.8.8.8"),
        ("https://010.010.010.010/", "8.8.8.8"),
        ("https://8.8.2056/", "8.8.8.8"),
        ("https://[::ffff:8.8.8.8]/", "8.8.8.8"),
        ("https://[2001:4860:4860::8888]/", "2001:4860:4860::8888"),
        ("https://[2001:4860:4860:0:0:0:0:8888]:443/", "2001:4860:4860::8888"),
    ],
)
def test_a_url_to_a_public_literal_is_accepted_with_a_canonical_host(url: str, host: str) -> None:
    parsed = validators.parse_outbound_url(url)
    assert parsed.host == host
    assert parsed.address == ipaddress.ip_address(host)
    assert parsed.port == 443


def test_a_url_with_a_host_name_is_accepted_unresolved() -> None:
    parsed = validators.parse_outbound_url("https://Hooks.Example.COM./v1/hook?id=7#frag")
    assert parsed == validators.OutboundUrl(
        scheme="https", host="hooks.example.com", port=443, path="/v1/hook", query="id=7"
    )
    assert parsed.address is None
    assert parsed.url == "https://hooks.example.com/v1/hook?id=7"


def test_a_url_without_a_path_gets_the_root_path() -> None:
    assert validators.parse_outbound_url("https://example.com").url == "https://example.com/"


def test_other_schemes_and_ports_can_be_allowed_explicitly() -> None:
    parsed = validators.parse_outbound_url(
        "http://example.com:8080/x",
        allowed_schemes=frozenset({"http", "https"}),
        allowed_ports=frozenset({80, 8080}),
    )
    assert (parsed.scheme, parsed.port, parsed.url) == ("http", 8080, "http://example.com:8080/x")
    ipv6 = validators.parse_outbound_url(
        "https://[2001:4860:4860::8888]:8443/", allowed_ports=frozenset({8443})
    )
    assert ipv6.url == "https://[2001:4860:4860::8888]:8443/"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("", "empty"),
        ("http://example.com/", "scheme"),
        ("HTTP://example.com/", "scheme"),
        ("ftp://example.com/", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("gopher://example.com:70/", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("example.com/hook", "scheme"),
        ("https://example.com:8443/", "port"),
        ("https://example.com:80/", "port"),
        ("https://example.com:0/", "port"),
        ("https://example.com:99999/", "port"),
        ("https://example.com:/", "port"),
        ("https://example.com:+443/", "port"),
        ("https://example.com:443:443/", "port"),
        ("https://[2001:4860:4860::8888]x/", "port"),
        ("https://user@example.com/", "user information"),
        ("https://user:secret@example.com/", "user information"),
        ("https://example.com@127.0.0.1/", "user information"),
        ("https://example.com:443@evil.example/", "user information"),
        ("https:///path", "host"),
        ("https://:443/", "host"),
        ("https:example.com", "host"),
        ("https://", "host"),
        ("https://exa mple.com/", "printable ASCII"),
        ("https://example.com\\@127.0.0.1/", "printable ASCII"),
        ("https://example.com/\r\nHost: evil", "printable ASCII"),
        ("https://例え.jp/", "printable ASCII"),
        ("https://localhost/", "public, fully qualified"),
        ("https://LOCALHOST./", "public, fully qualified"),
        ("https://api.localhost/", "public, fully qualified"),
        ("https://metadata/", "public, fully qualified"),
        ("https://exa_mple.com/", "host name"),
        ("https://-bad.example.com/", "host name"),
        ("https://a..example.com/", "host name"),
        ("https://%31%32%37.0.0.1/", "percent-encode"),
        ("https://" + "a" * 64 + ".example.com/", "host name"),
        ("https://1.2.3.4.5/", "IPv4"),
        ("https://256.1.1.1/", "IPv4"),
        ("https://1.2.3.256/", "IPv4"),
        ("https://4294967296/", "IPv4"),
        ("https://08.8.8.8/", "IPv4"),
        ("https://1..8/", "IPv4"),
        ("https://example.123/", "IPv4"),
        ("https://[127.0.0.1]/", "URL"),
        ("https://[::1/", "URL"),
        ("https://[fe80::1%25eth0]/", "zone"),
        ("https://" + "a" * 2048 + ".com/", "at most 2048"),
    ],
)
def test_a_url_breaking_a_rule_is_rejected(url: str, problem: str) -> None:
    with pytest.raises(InvalidValue, match=problem):
        validators.parse_outbound_url(url)


def test_a_rejected_url_is_not_quoted_so_credentials_in_it_do_not_leak() -> None:
    with pytest.raises(InvalidValue) as caught:
        validators.parse_outbound_url("https://user:hunter2@example.com/")
    assert "hunter2" not in str(caught.value)


# --- resolved addresses -------------------------------------------------------------------------


def test_resolved_public_addresses_are_returned_for_pinning() -> None:
    assert validators.check_resolved_addresses(["93.184.216.34", "2606:2800:220:1::1"]) == (
        ipaddress.IPv4Address("93.184.216.34"),
        ipaddress.IPv6Address("2606:2800:220:1::1"),
    )


def test_resolved_ipv4_mapped_addresses_are_unmapped_and_duplicates_dropped() -> None:
    assert validators.check_resolved_addresses(["::ffff:8.8.8.8", "8.8.8.8"]) == (
        ipaddress.IPv4Address("8.8.8.8"),
    )


@pytest.mark.parametrize(
    "private",
    [
        "10.0.0.1",
        "127.0.0.1",
        "169.254.169.254",
        "::1",
        "::ffff:127.0.0.1",
        "::ffff:7f00:1",
        "fd00:ec2::254",
        "fe80::1%eth0",
        "64:ff9b::a00:1",
        "0.0.0.0",  # noqa: S104 - a resolved address under test, not a bind address
    ],
)
def test_a_host_name_resolving_to_one_private_address_among_public_ones_is_rejected(
    private: str,
) -> None:
    parsed = validators.parse_outbound_url("https://rebind.example.com/hook")
    assert parsed.address is None  # a name: the caller resolves it, then checks every address
    with pytest.raises(InvalidValue, match="non-public"):
        validators.check_resolved_addresses(["93.184.216.34", private, "8.8.8.8"])


def test_a_nat64_address_is_judged_by_the_ipv4_address_it_embeds() -> None:
    assert validators.check_resolved_addresses(["64:ff9b::808:808"])


def test_a_host_name_resolving_to_nothing_is_rejected() -> None:
    with pytest.raises(InvalidValue, match="any address"):
        validators.check_resolved_addresses([])


def test_a_resolved_value_that_is_not_an_address_is_rejected() -> None:
    with pytest.raises(InvalidValue, match="not an IP address"):
        validators.check_resolved_addresses(["example.com"])


def test_passing_a_single_string_instead_of_a_list_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        validators.check_resolved_addresses("8.8.8.8")
