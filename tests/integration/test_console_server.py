"""The console's server (gateway/frontdoor/console.py) on a free port: its files with headers that
keep it to itself and the gateway, /config.json from the settings, and a sentence saying how to
build it when it is not built."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from gateway.frontdoor.console import NOT_BUILT, console_server
from gateway.render import DEFAULT_DESCRIPTOR, build_config
from gateway.settings import GatewaySettings

GATEWAY = "https://api.r3mes.example"


@contextmanager
def serving(settings: GatewaySettings, dist: Path) -> Iterator[str]:
    """The console's server of `settings` on a free port instead of theirs."""
    server = console_server(settings.model_copy(update={"console_port": 0}), dist)
    assert server is not None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def console_settings(chain: str = "remes-1") -> GatewaySettings:
    return GatewaySettings(
        listen_host="127.0.0.1",
        console_port=8083,
        console_gateway_url=GATEWAY,
        console_keplr_chain_id=chain,
    )


def allowed_origins(settings: GatewaySettings) -> list[str]:
    """The origins of the CORS policy in the gateway's rendered configuration."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for matcher in node.get("allow_origin_string_match", []):
                found.append(matcher["exact"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(build_config(settings, DEFAULT_DESCRIPTOR))
    return found


@pytest.fixture
def built(tmp_path: Path) -> Path:
    (tmp_path / "index.html").write_text("<!doctype html><title>R3MES console</title>")
    return tmp_path


def test_without_a_console_port_there_is_no_console_server(tmp_path: Path) -> None:
    assert console_server(GatewaySettings(console_port=None), tmp_path) is None


def test_the_config_names_the_gateway_the_chain_and_the_serving_prices(
    built: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("R3MES_SERVING_PRICES", json.dumps({"big": {"prompt": 3, "completion": 7}}))
    monkeypatch.setenv("R3MES_SERVING_DEFAULT_COMPLETION_PRICE_MICRO_CREDITS", "4")
    settings = console_settings("remes-test")

    with serving(settings, built) as url:
        reply = httpx.get(f"{url}/config.json")

    assert reply.status_code == 200
    assert reply.headers["cache-control"] == "no-store"
    assert reply.json() == {
        "gateway_url": GATEWAY,
        "keplr_chain_id": "remes-test",
        "default_price": {"prompt": 1, "completion": 4},
        "prices": {"big": {"prompt": 3, "completion": 7}},
    }


def test_the_page_may_call_only_itself_and_the_gateway_and_is_never_framed(built: Path) -> None:
    with serving(console_settings(), built) as url:
        reply = httpx.get(f"{url}/")

    assert reply.status_code == 200
    assert "<title>R3MES console</title>" in reply.text
    policy = reply.headers["content-security-policy"]
    assert f"connect-src 'self' {GATEWAY};" in policy
    assert "script-src 'self';" in policy
    assert "frame-ancestors 'none'" in policy
    assert reply.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "BREW"])
def test_a_method_other_than_get_is_refused_as_the_client_s_mistake(
    built: Path, method: str
) -> None:
    with serving(console_settings(), built) as url:
        reply = httpx.request(method, f"{url}/", content=b"x")

    assert reply.status_code == 405
    assert reply.headers["allow"] == "GET, HEAD"
    assert f"{method} is not allowed here" in reply.text


def test_a_console_not_built_says_how_to_build_it(tmp_path: Path) -> None:
    with serving(console_settings(), tmp_path / "dist") as url:
        reply = httpx.get(f"{url}/")

    assert reply.status_code == 503
    assert NOT_BUILT in reply.text


def test_the_gateway_s_cors_allows_the_console_s_origins_beside_the_configured_ones(
    tmp_path: Path,
) -> None:
    configured = "https://app.r3mes.example"
    settings = GatewaySettings(data_dir=tmp_path, console_port=8083, cors_origins=[configured])

    assert allowed_origins(settings) == [
        configured,
        "http://127.0.0.1:8083",
        "http://localhost:8083",
    ]


def test_without_a_console_the_gateway_allows_only_the_configured_origins(tmp_path: Path) -> None:
    settings = GatewaySettings(
        data_dir=tmp_path, console_port=None, cors_origins=["https://a.example"]
    )

    assert allowed_origins(settings) == ["https://a.example"]
