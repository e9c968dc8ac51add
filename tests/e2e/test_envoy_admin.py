"""Envoy's admin endpoint is out of reach of web pages: on a unix socket of this user by default,
on a loopback port only when asked for."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from gateway.admin import admin_socket, envoy_ready
from gateway.render import DEFAULT_DESCRIPTOR, build_config
from gateway.settings import GatewaySettings
from runner.local_stack import LocalStack

LISTEN = "0A"  # the TCP state of a listening socket in /proc/net/tcp


def settings(**values: Any) -> GatewaySettings:
    return GatewaySettings(_env_file=None, **values)


def open_file_links(pid: int) -> list[str]:
    """What each of `pid`'s open descriptors points to. A descriptor closed between listing
    and reading (Envoy closes connections all the time) is skipped: it listens on nothing."""
    links = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            links.append(os.readlink(fd))
        except FileNotFoundError:
            continue
    return links


def listening_tcp_ports(pid: int) -> set[int]:
    """The TCP ports process `pid` listens on, from /proc (Linux)."""
    inodes = {
        link[len("socket:[") : -1] for link in open_file_links(pid) if link.startswith("socket:[")
    }
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_address, state, inode = fields[1], fields[3], fields[9]
            if state == LISTEN and inode in inodes:
                ports.add(int(local_address.rsplit(":", 1)[1], 16))
    return ports


def test_envoy_listens_on_no_tcp_port_but_the_gateways_by_default(stack: LocalStack) -> None:
    assert listening_tcp_ports(stack.pid_of("envoy")) == {stack.ports.gateway}


def test_admin_answers_on_a_unix_socket_that_only_its_user_may_open(stack: LocalStack) -> None:
    socket_path = admin_socket(Path(stack.environment["R3MES_DATA_DIR"]))

    assert envoy_ready(socket_path)
    assert stat.S_ISSOCK(socket_path.stat().st_mode)
    assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600


def test_admin_is_on_a_unix_socket_in_the_data_folder_unless_a_port_is_asked_for(
    tmp_path: Path,
) -> None:
    config = build_config(settings(data_dir=tmp_path), DEFAULT_DESCRIPTOR)

    assert config["admin"]["address"] == {
        "pipe": {"path": str(tmp_path.resolve() / "envoy-admin.sock"), "mode": 0o600}
    }
