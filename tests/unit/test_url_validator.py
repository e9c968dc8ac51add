"""Outbound URLs against SSRF: every notation of a non-global address, and resolved addresses."""

from __future__ import annotations

import ipaddress

import pytest

from services.core import validators
from services.core.validators import InvalidValue

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
