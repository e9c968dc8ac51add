"""Free loopback ports for what a test or `make run`'s checks start: chosen below the kernel's
ephemeral range, so that no outgoing connection takes one before it is bound. Light on
purpose (the standard library only): the runner imports it."""

from __future__ import annotations

import random
import socket
from contextlib import ExitStack
from pathlib import Path

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A port nobody listens on right now (another process could still take it before us)."""
    (port,) = free_ports(1)
    return port


# Where the kernel takes the ports of outgoing connections (and of binds to port 0).
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_CHOSEN_PORT = 10000


def free_ports(count: int) -> list[int]:
    """`count` different ports nobody listens on right now, below the kernel's ephemeral range:
    a port chosen there stays free until a process binds it, where one the kernel handed out
    could be taken meanwhile by any outgoing connection (the tests make thousands). Each probe
    stays bound until all are chosen, so no port is chosen twice; chosen at random, so that
    test processes choosing at once seldom meet (and a probe that fails is skipped)."""
    lowest_ephemeral = _lowest_ephemeral_port()
    with ExitStack() as probes:
        chosen: list[int] = []
        while len(chosen) < count:
            port = random.randrange(LOWEST_CHOSEN_PORT, lowest_ephemeral)  # noqa: S311
            probe = probes.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            try:
                probe.bind((LOOPBACK, port))
            except OSError:
                continue
            chosen.append(port)
        return chosen


def _lowest_ephemeral_port() -> int:
    try:
        lowest = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        lowest = 32768  # Linux's default range starts here
    return max(lowest, LOWEST_CHOSEN_PORT + 1000)
