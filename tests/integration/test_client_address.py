"""The access log names the client: the address the gateway forwards, else the peer. A trusted
peer is not enough: only a call carrying the gateway secret may name its client, so another
process on the gateway's host (loopback) cannot pick its own address."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr
from r3mes.users.v1 import users_pb2, users_pb2_grpc

from services.core.settings import Settings
from services.core.testing import running_server
from services.users.server import create_server
from tests.conftest import settings_for

GATEWAY_SECRET = "client-address-gateway-secret"


def _settings(tmp_path: Path, **changes: object) -> Settings:
    # Loopback is trusted by default, as under `make run`.
    settings = settings_for("sqlite", tmp_path, suffix="")
    return settings.model_copy(update={"gateway_secret": SecretStr(GATEWAY_SECRET), **changes})


async def _logged_client(
    settings: Settings, caplog: pytest.LogCaptureFixture, *secret: str
) -> object:
    caplog.set_level("INFO", logger="r3mes.access")
    metadata = [("x-forwarded-for", "203.0.113.7")]
    metadata += [("x-r3mes-gateway-secret", value) for value in secret]
    async with running_server(create_server, settings, "users") as (_, channel):
        await users_pb2_grpc.UsersServiceStub(channel).GetNetworkStats(
            users_pb2.GetNetworkStatsRequest(), metadata=metadata
        )
    [line] = [r for r in caplog.records if getattr(r, "method", "").endswith("GetNetworkStats")]
    return getattr(line, "client", None)


async def test_a_call_from_the_gateway_is_logged_with_the_forwarded_client(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert await _logged_client(_settings(tmp_path), caplog, GATEWAY_SECRET) == "203.0.113.7"


@pytest.mark.parametrize(
    "secret", [(), ("not-the-gateway-secret",)], ids=["missing secret", "wrong secret"]
)
async def test_a_forwarded_address_from_a_trusted_peer_without_the_gateway_secret_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, secret: tuple[str, ...]
) -> None:
    assert await _logged_client(_settings(tmp_path), caplog, *secret) == "127.0.0.1"


async def test_without_a_gateway_secret_configured_no_forwarded_address_is_believed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(tmp_path, gateway_secret=None)

    assert await _logged_client(settings, caplog, GATEWAY_SECRET) == "127.0.0.1"


async def test_a_forwarded_address_from_an_untrusted_peer_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(tmp_path, trusted_proxies=[])

    assert await _logged_client(settings, caplog, GATEWAY_SECRET) == "127.0.0.1"
