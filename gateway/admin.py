"""Envoy's admin endpoint, and the readiness probe that uses it.

Admin can stop Envoy, fail its health checks and dump its whole configuration, and it checks
neither Origin nor Host: on a TCP port, any web page open on the same machine could reach it
(DNS rebinding). So by default it listens on a unix socket in the data folder, readable by this
user only; R3MES_GATEWAY_ADMIN_PORT puts it on 127.0.0.1 instead, for whoever asks.
"""

from __future__ import annotations

import http.client
import socket
from pathlib import Path
from typing import Any

from gateway.settings import GatewaySettings

ADMIN_HOST = "127.0.0.1"
ADMIN_SOCKET_NAME = "envoy-admin.sock"
ADMIN_SOCKET_MODE = 0o600
PROBE_TIMEOUT_SECONDS = 0.5

# Where admin listens: a TCP port on ADMIN_HOST, or the path of a unix socket.
AdminEndpoint = int | Path


def admin_socket(data_dir: Path) -> Path:
    return data_dir.resolve() / ADMIN_SOCKET_NAME


def admin_endpoint(settings: GatewaySettings) -> AdminEndpoint:
    if settings.gateway_admin_port is not None:
        return settings.gateway_admin_port
    return admin_socket(settings.data_dir)


def describe(endpoint: AdminEndpoint) -> str:
    """How a person reaches admin, e.g. with curl."""
    if isinstance(endpoint, int):
        return f"http://{ADMIN_HOST}:{endpoint}"
    return f"curl --unix-socket {endpoint} http://localhost/"


def admin_config(settings: GatewaySettings) -> dict[str, Any]:
    """The bootstrap's `admin` section."""
    endpoint = admin_endpoint(settings)
    if isinstance(endpoint, int):
        return {"address": {"socket_address": {"address": ADMIN_HOST, "port_value": endpoint}}}
    endpoint.parent.mkdir(parents=True, exist_ok=True)
    return {"address": {"pipe": {"path": str(endpoint), "mode": ADMIN_SOCKET_MODE}}}


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket: the standard library has no client for it, and one GET does not
    justify a dependency."""

    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=PROBE_TIMEOUT_SECONDS)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(str(self._path))


def _connection(endpoint: AdminEndpoint) -> http.client.HTTPConnection:
    if isinstance(endpoint, int):
        return http.client.HTTPConnection(ADMIN_HOST, endpoint, timeout=PROBE_TIMEOUT_SECONDS)
    return _UnixHTTPConnection(endpoint)


def admin_request(endpoint: AdminEndpoint, method: str, path_and_query: str) -> tuple[int, str]:
    """One call to admin (which changes state only on POST): the status and the body."""
    connection = _connection(endpoint)
    try:
        connection.request(method, path_and_query)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def envoy_ready(endpoint: AdminEndpoint) -> bool:
    """Admin's /ready: 200 once Envoy's listeners serve, and not while it is draining."""
    connection = _connection(endpoint)
    try:
        connection.request("GET", "/ready")
        return connection.getresponse().status == http.client.OK
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()
