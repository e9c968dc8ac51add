"""The client's address: x-forwarded-for is believed only from trusted proxies."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.core.network import client_address, peer_address, trusted_networks
from services.core.settings import Settings

LOOPBACK = trusted_networks(["127.0.0.1/32", "::1/128"])


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("ipv4:127.0.0.1:50512", "127.0.0.1"),
        ("ipv6:[::1]:50512", "::1"),
        ("ipv6:[2001:db8::7]:443", "2001:db8::7"),
        ("unix:/tmp/socket", None),
    ],
)
def test_the_peer_address_is_read_from_grpcs_peer_string(peer: str, address: str | None) -> None:
    assert peer_address(peer) == address


def test_a_direct_caller_is_its_own_client_whatever_it_forwards() -> None:
    assert client_address("ipv4:198.51.100.9:4000", "203.0.113.7", LOOPBACK) == "198.51.100.9"


def test_behind_the_gateway_the_forwarded_address_is_the_client() -> None:
    assert client_address("ipv4:127.0.0.1:4000", "203.0.113.7", LOOPBACK) == "203.0.113.7"


def test_only_the_hops_added_by_trusted_proxies_are_believed() -> None:
    trusted = trusted_networks(["127.0.0.1/32", "10.0.0.0/8"])
    # The caller wrote 1.1.1.1 itself; 198.51.100.9 reached our first trusted proxy.
    chain = "1.1.1.1, 198.51.100.9, 10.0.0.5"

    assert client_address("ipv4:127.0.0.1:4000", chain, trusted) == "198.51.100.9"


def test_a_trusted_peer_without_forwarding_is_the_client() -> None:
    assert client_address("ipv6:[::1]:4000", None, LOOPBACK) == "::1"


def test_a_malformed_forwarded_hop_stops_at_the_last_trusted_address() -> None:
    assert client_address("ipv4:127.0.0.1:4000", "<script>", LOOPBACK) == "127.0.0.1"


def test_a_trusted_proxy_setting_that_is_no_network_is_refused_at_startup() -> None:
    with pytest.raises(ValidationError, match="trusted_proxies"):
        Settings(trusted_proxies=["not-a-network"])
