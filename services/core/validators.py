"""Central input validators (ARCHITECTURE.md section 8): pure functions, no I/O.

Each validator returns its input (or a parsed form of it) or raises InvalidValue with a short
description that names no field and never quotes a secret; the caller attaches the field path and
reports INVALID_ARGUMENT. Free text is checked for length and control characters only: SQL is
stopped by parametrized queries and markup by the renderer, never by word lists.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import string
import unicodedata
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeAlias
from urllib.parse import urlsplit

import bech32

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


class InvalidValue(ValueError):
    """A value breaks its rule; str(error) is a description such as "must be lowercase"."""


WALLET_HRP = "remes"
_BECH32_MAX_LENGTH = 90  # BIP-173: the checksum's error-detection guarantees stop there
_BECH32M_CONSTANT = 0x2BC830A3
_WALLET_PAYLOAD_SIZES = (20, 32)  # secp256k1 account (RIPEMD160 of SHA256) or a module/contract


def bech32_data(value: str, *, hrp: str = WALLET_HRP) -> tuple[int, ...]:
    """The 5-bit data words of a lowercase bech32 (not bech32m) string whose prefix is `hrp`.

    This is the checksum level only: the overall length and the payload are rules of the address
    (`wallet_payload`), so call this directly only on input whose length is already bounded.
    """
    if any(not 33 <= ord(char) <= 126 for char in value):
        raise InvalidValue("must contain only printable ASCII characters")
    if value != value.lower():
        raise InvalidValue("must be lowercase")
    prefix, separator, data_part = value.rpartition("1")
    if not (separator and prefix and prefix == hrp):
        raise InvalidValue(f"must start with {hrp}1")
    if len(data_part) < 6:
        raise InvalidValue("is too short to hold a checksum")
    if any(char not in bech32.CHARSET for char in data_part):
        raise InvalidValue("contains a character outside the bech32 alphabet")
    words = [bech32.CHARSET.index(char) for char in data_part]
    residue: int = bech32.bech32_polymod(bech32.bech32_hrp_expand(prefix) + words)
    if residue == _BECH32M_CONSTANT:
        raise InvalidValue("has a bech32m checksum; a bech32 address is expected")
    if residue != 1:
        raise InvalidValue("has a bad checksum (mistyped or truncated)")
    return tuple(words[:-6])


def wallet_payload(value: str) -> bytes:
    """The 20- or 32-byte account of a `remes1...` address (to compare with a pubkey hash)."""
    if not value:
        raise InvalidValue("must not be empty")
    if len(value) > _BECH32_MAX_LENGTH:
        raise InvalidValue(f"must be at most {_BECH32_MAX_LENGTH} characters")
    payload: list[int] | None = bech32.convertbits(bech32_data(value), 5, 8, False)
    if payload is None:
        raise InvalidValue("has invalid padding bits")
    if len(payload) not in _WALLET_PAYLOAD_SIZES:
        raise InvalidValue("must encode a 20- or 32-byte account")
    return bytes(payload)


def wallet_address(value: str) -> str:
    wallet_payload(value)
    return value


API_KEY_PREFIX = "r3mes_"
_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_API_KEY_BODY_LENGTH = 32  # 32 * log2(62) = 190.5 bits
_API_KEY_CHECKSUM_LENGTH = 6  # 62**6 > 2**32, so any CRC32 fits
API_KEY_LENGTH = len(API_KEY_PREFIX) + _API_KEY_BODY_LENGTH + _API_KEY_CHECKSUM_LENGTH


def _api_key_checksum(body: str) -> str:
    number = zlib.crc32(body.encode("ascii"))
    digits = []
    for _ in range(_API_KEY_CHECKSUM_LENGTH):
        number, digit = divmod(number, 62)
        digits.append(_BASE62[digit])
    return "".join(reversed(digits))


def new_wallet_address() -> str:
    """A fresh, valid `remes` address (a random 20-byte account): a throwaway wallet for
    examples and tests, whose key nobody holds."""
    data = bech32.convertbits(os.urandom(20), 8, 5)
    assert data is not None
    address: str = bech32.bech32_encode("remes", data)
    return address


def new_api_key() -> str:
    """A fresh secret: `r3mes_` + 32 random base62 characters + the base62 CRC32 of those."""
    body = "".join(secrets.choice(_BASE62) for _ in range(_API_KEY_BODY_LENGTH))
    return API_KEY_PREFIX + body + _api_key_checksum(body)


def api_key(value: str) -> str:
    """Checks the format and checksum only, offline; whether the key exists is the store's call."""
    if not value.startswith(API_KEY_PREFIX):
        raise InvalidValue(f"must start with {API_KEY_PREFIX}")
    if len(value) != API_KEY_LENGTH:
        raise InvalidValue(f"must be {API_KEY_LENGTH} characters long")
    rest = value[len(API_KEY_PREFIX) :]
    if not (rest.isascii() and rest.isalnum()):
        raise InvalidValue(f"must contain only letters and digits after {API_KEY_PREFIX}")
    body, checksum = rest[:_API_KEY_BODY_LENGTH], rest[_API_KEY_BODY_LENGTH:]
    # The checksum is derivable from the body, so comparing it leaks nothing: plain == is fine.
    if checksum != _api_key_checksum(body):
        raise InvalidValue("has a bad checksum (mistyped, truncated or not an R3MES key)")
    return value


_NAME_PUNCTUATION = frozenset(" -_.")
# Marks (Mn, Mc) are letters' accents and vowel signs: Hindi or Thai names need them.
_NAME_CATEGORIES = frozenset({"Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Nd"})
# ZWNJ and ZWJ are format characters that Persian, Indic scripts and emoji sequences depend on;
# the Cf characters that reorder or hide text (bidi overrides, zero-width space, tags) stay out.
_TEXT_ALLOWED = frozenset("\n\t\u200c\u200d")
_TEXT_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})
_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def name(value: str, *, max_length: int = 64) -> str:
    if not value:
        raise InvalidValue("must not be empty")
    if len(value) > max_length:
        raise InvalidValue(f"must be at most {max_length} characters")
    if value[0] == " " or value[-1] == " ":
        raise InvalidValue("must not start or end with a space")
    for char in value:
        if char not in _NAME_PUNCTUATION and unicodedata.category(char) not in _NAME_CATEGORIES:
            raise InvalidValue("may contain only letters, digits, spaces, '-', '_' and '.'")
    if unicodedata.category(value[0]) in ("Mn", "Mc"):
        raise InvalidValue("must not start with a combining mark")
    return value


def free_text(value: str, *, max_length: int = 4000) -> str:
    """Any text up to `max_length` characters (empty allowed), stored verbatim.

    Only control and invisible formatting characters are refused (\\x00, escape sequences, bidi
    overrides that make text read differently from what it is); newline and tab are fine, but a
    carriage return is not, so callers fed by HTML forms normalize CRLF first.
    """
    if len(value) > max_length:
        raise InvalidValue(f"must be at most {max_length} characters")
    for char in value:
        if char not in _TEXT_ALLOWED and unicodedata.category(char) in _TEXT_FORBIDDEN_CATEGORIES:
            raise InvalidValue("must not contain control or invisible formatting characters")
    return value


def idempotency_key(value: str) -> str:
    if not _IDEMPOTENCY_KEY.fullmatch(value):
        raise InvalidValue("must be 1 to 128 characters of A-Z, a-z, 0-9, '_', '.', ':' and '-'")
    return value


_DEFAULT_PORTS = {"https": 443, "http": 80}
_MAX_URL_LENGTH = 2048
_HOST_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# Resolvers (inet_aton) and WHATWG parsers read a host whose last label is numeric as IPv4.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NOT_PUBLIC = "must not point to a loopback, private, link-local or other non-public address"


@dataclass(frozen=True)
class OutboundUrl:
    """A checked URL. `host` is canonical: a lowercase DNS name, a dotted IPv4 address or a
    compressed IPv6 address without brackets; `address` is set when the host is an IP literal."""

    scheme: str
    host: str
    port: int
    path: str
    query: str
    address: IPAddress | None = None

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == _DEFAULT_PORTS.get(self.scheme) else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        query = f"?{self.query}" if self.query else ""
        return f"{self.scheme}://{self.authority}{self.path}{query}"


def _is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        # Addresses that carry an IPv4 address are judged by it: 6to4 and NAT64 gateways
        # forward to the embedded address, and dual-stack sockets treat mapped ones as IPv4.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return _is_public(embedded)
        if address.teredo is not None or address.is_site_local:
            return False
    # is_global alone misses multicast and, on older Pythons, several reserved ranges.
    return address.is_global and not (address.is_multicast or address.is_reserved)


def _inet_number(label: str) -> int:
    if not _NUMERIC_LABEL.fullmatch(label):
        raise ValueError(label)
    if label.startswith("0x"):
        return int(label[2:] or "0", 16)
    return int(label, 8 if label.startswith("0") else 10)


def _loose_ipv4(labels: list[str]) -> ipaddress.IPv4Address:
    """Reads a host as inet_aton does: 1 to 4 parts, each decimal, 0-octal or 0x-hex."""
    try:
        *head, last = (_inet_number(label) for label in labels)
    except ValueError:
        raise InvalidValue("has a host that is not a valid IPv4 address") from None
    if len(head) > 3 or any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        raise InvalidValue("has a host that is not a valid IPv4 address")
    return ipaddress.IPv4Address(sum(n << (24 - 8 * i) for i, n in enumerate(head)) + last)


def _in_any(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def _parse_host(
    host: str, bracketed: bool, trusted_networks: Sequence[IPNetwork] = ()
) -> tuple[str, IPAddress | None]:
    if not host:
        raise InvalidValue("must have a host")
    address: IPAddress
    if bracketed:
        try:
            parsed = ipaddress.IPv6Address(host)
        except ValueError:
            raise InvalidValue("has an invalid IPv6 address in brackets") from None
        address = parsed.ipv4_mapped or parsed
    else:
        labels = host.lower().split(".")
        if len(labels) > 1 and not labels[-1]:
            labels.pop()  # the absolute form "example.com."
        if _NUMERIC_LABEL.fullmatch(labels[-1]):
            address = _loose_ipv4(labels)
        else:
            if not all(_HOST_LABEL.fullmatch(label) for label in labels) or len(host) > 253:
                raise InvalidValue("has an invalid host name (use ASCII, punycode for IDN)")
            if len(labels) < 2 or labels[-1] == "localhost":
                raise InvalidValue("must name a public, fully qualified host")
            return ".".join(labels), None
    if not (_is_public(address) or _in_any(address, trusted_networks)):
        raise InvalidValue(_NOT_PUBLIC)
    return str(address), address


def parse_outbound_url(
    value: str,
    *,
    allowed_schemes: frozenset[str] = frozenset({"https"}),
    allowed_ports: frozenset[int] = frozenset({443}),
    trusted_networks: Sequence[IPNetwork] = (),
) -> OutboundUrl:
    """Checks a URL the server will fetch, without resolving it (see check_resolved_addresses).

    Refuses other schemes and ports, user information, and IP literals that are not public in any
    notation a resolver accepts (decimal, octal, hex, short IPv4, IPv4-mapped/NAT64/6to4 IPv6).
    Connect to `.url` (or `.host`), not to the original string: the host may have been rewritten.
    `trusted_networks` (an operator's choice, never a caller's) admits IP literals in them on any
    port; host names are not affected: what a name resolves to is checked by
    check_resolved_addresses, which trusts no network, since a name may be re-pointed at will.
    """
    if not value:
        raise InvalidValue("must not be empty")
    if len(value) > _MAX_URL_LENGTH:
        raise InvalidValue(f"must be at most {_MAX_URL_LENGTH} characters")
    # Parsers disagree about backslashes, whitespace and non-ASCII; refusing them keeps ours
    # and the HTTP client's reading of the URL identical.
    if any(not "!" <= char <= "~" for char in value) or "\\" in value:
        raise InvalidValue("may contain only printable ASCII, without spaces or backslashes")
    try:
        parts = urlsplit(value)
    except ValueError:
        raise InvalidValue("is not a valid URL") from None
    if parts.scheme not in allowed_schemes:
        raise InvalidValue(f"must use the scheme {' or '.join(sorted(allowed_schemes))}")
    netloc = parts.netloc
    if "@" in netloc:
        raise InvalidValue("must not contain user information")
    if "%" in netloc:  # no DNS name needs it; in an IPv6 literal it names a local interface
        raise InvalidValue("must not percent-encode the host or name an IPv6 zone")
    bracketed = netloc.startswith("[")
    if bracketed:
        host, bracket, rest = netloc[1:].partition("]")
        if not bracket:
            raise InvalidValue("has an unclosed '[' in the host")
    else:
        host, colon, port_text = netloc.partition(":")
        rest = colon + port_text
    if rest and not (rest[0] == ":" and rest[1:].isdigit()):
        raise InvalidValue("has an invalid port")
    port = int(rest[1:]) if rest else _DEFAULT_PORTS.get(parts.scheme)
    canonical_host, address = _parse_host(host, bracketed, trusted_networks)
    trusted = address is not None and _in_any(address, trusted_networks)
    if port is None or not (trusted or port in allowed_ports):
        raise InvalidValue(f"must use the port {' or '.join(map(str, sorted(allowed_ports)))}")
    return OutboundUrl(
        parts.scheme, canonical_host, port, parts.path or "/", parts.query, address=address
    )


def check_resolved_addresses(addresses: Iterable[str]) -> tuple[IPAddress, ...]:
    """Checks what a host name resolved to: at least one address, and every one of them public.

    Returns the addresses (IPv4-mapped ones unmapped, duplicates dropped) to connect to. The caller
    must pin: resolve once (getaddrinfo), pass every result here, then connect to one of the
    returned addresses, sending the original host name only as the TLS SNI / Host header. Never
    let the HTTP client resolve the name again: a second lookup may answer differently (DNS
    rebinding) and reach an internal address that was never checked. Check every redirect the same
    way, or do not follow redirects.
    """
    if isinstance(addresses, str):
        raise TypeError("pass the resolved addresses as a collection, not a single string")
    checked: list[IPAddress] = []
    for text in addresses:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise InvalidValue("resolved to something that is not an IP address") from None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not _is_public(address):
            raise InvalidValue(_NOT_PUBLIC)
        if address not in checked:
            checked.append(address)
    if not checked:
        raise InvalidValue("does not resolve to any address")
    return tuple(checked)


def ipfs_cid(value: str) -> str:
    """An IPFS content id: v0 (`Qm` + base58btc) or v1 in any multibase (usually base32 `b...`),
    whose multihash decodes whole."""
    # Imported here: only the services that take content ids pay for loading the codecs.
    from multiformats import CID

    if not value or len(value) > _MAX_CID_LENGTH:
        raise InvalidValue(f"must be 1 to {_MAX_CID_LENGTH} characters")
    try:
        CID.decode(value)
    except Exception:  # the codecs raise a dozen unrelated types for malformed input
        raise InvalidValue("is not an IPFS CID (v0 Qm... or v1, e.g. base32 bafy...)") from None
    return value


_MAX_CID_LENGTH = 128
