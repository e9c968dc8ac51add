"""Who is on the other end: the client's address, believed from x-forwarded-for only when the
peer that sent it is a trusted proxy (the gateway) and the call carries the gateway secret, so a
caller cannot pick its own address: not from outside, and not from a process on the gateway's
own host (loopback, under `make run`), which shares its address but not its secret."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from contextvars import ContextVar

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
FORWARDED_FOR_HEADER = "x-forwarded-for"
# Added by the gateway (gateway/render.py) and by the front door's OpenAI door to the calls it
# passes on (gateway/frontdoor/openai_door.py); the gateway strips every x-r3mes-* header a
# caller sends.
GATEWAY_SECRET_HEADER = "x-r3mes-gateway-secret"  # noqa: S105 (a header name, not a secret)

client_address_var: ContextVar[str | None] = ContextVar("client_address", default=None)


def trusted_networks(cidrs: Sequence[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def peer_address(peer: str) -> str | None:
    """The IP address in grpc's peer string (`ipv4:1.2.3.4:5678`, `ipv6:[::1]:5678`)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    return None


def client_address(
    peer: str, forwarded_for: str | None, trusted: Sequence[IPNetwork]
) -> str | None:
    """Walk x-forwarded-for from the right while each hop is a trusted proxy; the first address
    that is not one is the client. An untrusted peer is itself the client."""
    address = peer_address(peer)
    hops = [hop.strip() for hop in (forwarded_for or "").split(",") if hop.strip()]
    while address is not None and _is_trusted(address, trusted) and hops:
        hop = hops.pop()
        if _ip(hop) is None:
            # Garbage from behind our proxies: the proxy's own address is all we know.
            break
        address = hop
    return address


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _is_trusted(address: str, trusted: Sequence[IPNetwork]) -> bool:
    ip = _ip(address)
    return ip is not None and any(ip in network for network in trusted)
