"""Settings (defaults, environment, secret file) and the structured log lines."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from pydantic import SecretStr, ValidationError
from r3mes.users.v1 import users_pb2, users_pb2_grpc

from services.core.db import database_url
from services.core.logging import JsonFormatter, request_id_var
from services.core.registry import NAMES
from services.core.settings import Settings
from services.core.testing import new_wallet_address, running_server
from services.users.server import create_server
from tests.integration.rpc import failure_of


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No R3MES_* variable and no .env file: what a fresh checkout sees. Returns the cwd."""
    for variable in list(os.environ):
        if variable.upper().startswith("R3MES_"):
            monkeypatch.delenv(variable)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --- settings -------------------------------------------------------------------------------------


def test_the_defaults_are_the_embedded_mode(clean_environment: Path) -> None:
    settings = Settings()

    assert settings.data_dir == Path("data")
    assert settings.database_url is None
    assert str(database_url(settings, "users")) == "sqlite+aiosqlite:///data/users.db"
    assert (clean_environment / "data").is_dir()
    ports = list(range(50051, 50051 + len(NAMES)))  # one after the other, users first
    assert [settings.port_of(name) for name in NAMES] == ports
    assert [settings.target_of(name) for name in NAMES] == [f"127.0.0.1:{port}" for port in ports]
    assert settings.listen_host == "127.0.0.1"
    assert settings.internal_token_value() is None


def test_an_environment_variable_overrides_a_default(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("R3MES_USERS_PORT", "6001")
    monkeypatch.setenv("R3MES_DATABASE_URL", "postgresql+asyncpg://db/r3mes")

    settings = Settings()

    assert settings.port_of("users") == 6001
    assert settings.port_of("credits") == 50054
    assert str(database_url(settings, "users")) == "postgresql+asyncpg://db/r3mes"


def test_a_target_left_unset_follows_its_port_and_a_set_one_wins(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("R3MES_CREDITS_PORT", "62074")
    monkeypatch.setenv("R3MES_MINING_TARGET", "mining:50053")
    monkeypatch.setenv("R3MES_LISTEN_HOST", "0.0.0.0")  # noqa: S104 - reached on loopback

    settings = Settings()

    assert settings.target_of("credits") == "127.0.0.1:62074"
    assert settings.target_of("mining") == "mining:50053"


def test_a_dotenv_file_is_read_and_the_environment_wins_over_it(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_environment / ".env").write_text("R3MES_MINING_PORT=7003\nR3MES_USERS_PORT=7001\n")
    monkeypatch.setenv("R3MES_USERS_PORT", "6001")

    settings = Settings()

    assert (settings.port_of("users"), settings.port_of("mining")) == (6001, 7003)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("R3MES_USERS_PORT", "70000"),
        ("R3MES_USERS_PORT", "not-a-port"),
        ("R3MES_SCHEMA_SUFFIX", "x; DROP SCHEMA users"),
        ("R3MES_DB_POOL_SIZE", "0"),
    ],
)
def test_an_invalid_value_stops_the_service_from_starting(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)

    # The message names what to fix: the variable, or the field it sets.
    with pytest.raises(ValidationError, match=f"(?i){variable}|{variable.removeprefix('R3MES_')}"):
        Settings()


def test_the_internal_token_file_wins_over_the_token_and_is_read_stripped(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = clean_environment / "internal-token"
    token_file.write_text("  from-the-file\n\n")
    monkeypatch.setenv("R3MES_INTERNAL_TOKEN", "from-the-environment")
    monkeypatch.setenv("R3MES_INTERNAL_TOKEN_FILE", str(token_file))

    assert Settings().internal_token_value() == "from-the-file"


def test_the_internal_token_alone_is_used_and_never_shown(clean_environment: Path) -> None:
    settings = Settings(internal_token=SecretStr("from-settings"))

    assert settings.internal_token_value() == "from-settings"
    assert "from-settings" not in repr(settings)
    assert "from-settings" not in settings.model_dump_json()


def test_an_empty_token_file_means_no_caller_is_internal(clean_environment: Path) -> None:
    token_file = clean_environment / "internal-token"
    token_file.write_text(" \n")

    settings = Settings(internal_token_file=token_file, internal_token=SecretStr("ignored"))

    assert settings.internal_token_value() is None


# --- the JSON log line ----------------------------------------------------------------------------


@pytest.fixture
def log_lines() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("r3mes.test.json")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, lines
    finally:
        logger.removeHandler(handler)


def test_a_log_line_is_one_json_object_with_the_request_id_and_extra_fields(
    log_lines: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, lines = log_lines
    token = request_id_var.set("req-7")
    try:
        logger.info("granted %s credits", 5, extra={"wallet": "remes1x", "amount": 5})
    finally:
        request_id_var.reset(token)

    [line] = lines.getvalue().splitlines()
    entry = json.loads(line)
    assert entry.pop("time").endswith("+00:00")
    assert entry == {
        "level": "INFO",
        "logger": "r3mes.test.json",
        "message": "granted 5 credits",
        "request_id": "req-7",
        "wallet": "remes1x",
        "amount": 5,
    }


def test_a_line_outside_a_request_has_no_request_id_and_odd_values_become_text(
    log_lines: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, lines = log_lines
    logger.warning("multi\nline", extra={"path": Path("/srv/data")})

    [line] = lines.getvalue().splitlines()
    entry = json.loads(line)
    assert "request_id" not in entry
    assert (entry["message"], entry["path"]) == ("multi\nline", "/srv/data")


def test_an_exception_is_logged_in_the_same_single_line(
    log_lines: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, lines = log_lines
    try:
        raise ValueError("broken")
    except ValueError:
        logger.exception("failed", extra={"incident_id": "abc"})

    [line] = lines.getvalue().splitlines()
    entry = json.loads(line)
    assert (entry["level"], entry["incident_id"]) == ("ERROR", "abc")
    assert entry["exception"].startswith("Traceback")
    assert "ValueError: broken" in entry["exception"]


# --- secrets stay out of the logs -----------------------------------------------------------------


async def test_no_internal_token_appears_in_the_log_of_a_refused_call(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    configured = "configured-secret-0f3b9c"
    offered = "offered-secret-77d1e2"
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    caplog.set_level(logging.DEBUG)
    settings = Settings(data_dir=tmp_path, internal_token=SecretStr(configured))
    try:
        async with running_server(create_server, settings, "users") as (_, channel):
            users = users_pb2_grpc.UsersServiceStub(channel)
            request = users_pb2.GetUserRequest(wallet_address=new_wallet_address())
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await users.GetUser(request, metadata=(("x-r3mes-internal-token", offered),))
    finally:
        root.removeHandler(handler)

    assert failure_of(raised.value).reason == "BAD_INTERNAL_TOKEN"
    logged = lines.getvalue()
    assert '"code": "UNAUTHENTICATED"' in logged  # the refusal itself was logged
    for secret in (configured, offered):
        assert secret not in logged
        assert secret not in caplog.text
        assert secret not in str(raised.value.trailing_metadata())
        assert secret not in (raised.value.details() or "")
