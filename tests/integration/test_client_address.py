"""The access log names the client: the forwarded address behind the gateway, else the peer."""

from __future__ import annotations

from pathlib import Path

import pytest
from r3mes.users.v1 import users_pb2, users_pb2_grpc

from services.core.settings import Settings
from services.core.testing import running_server
from services.users.server import create_server
from tests.conftest import settings_for


async def _logged_client(settings: Settings, caplog: pytest.LogCaptureFixture) -> object:
    caplog.set_level("INFO", logger="r3mes.access")
    async with running_server(create_server, settings, "users") as (_, channel):
        await users_pb2_grpc.UsersServiceStub(channel).GetNetworkStats(
            users_pb2.GetNetworkStatsRequest(), metadata=(("x-forwarded-for", "203.0.113.7"),)
        )
    [line] = [r for r in caplog.records if getattr(r, "method", "").endswith("GetNetworkStats")]
    return getattr(line, "client", None)


async def test_a_call_from_a_trusted_proxy_is_logged_with_the_forwarded_client(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for("sqlite", tmp_path, suffix="")  # loopback is trusted by default

    assert await _logged_client(settings, caplog) == "203.0.113.7"


async def test_a_forwarded_address_from_an_untrusted_peer_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for("sqlite", tmp_path, suffix="").model_copy(
        update={"trusted_proxies": []}
    )

    assert await _logged_client(settings, caplog) == "127.0.0.1"
