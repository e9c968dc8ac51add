"""A Python client generated from the gateway's own /openapi.json (openapi-python-client) calls
CreateUser and GetUser through the gateway, errors included."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from runner.local_stack import LocalStack
from services.core.testing import new_wallet_address

PACKAGE = "r3mes_generated_client"
# No formatter run after generating (its default post hooks call ruff from PATH).
CONFIG = f"package_name_override: {PACKAGE}\npost_hooks: []\n"


@pytest.fixture(scope="module")
def client_package(
    stack: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModuleType]:
    work = tmp_path_factory.mktemp("generated")
    (work / "config.yaml").write_text(CONFIG)
    generator = Path(sys.executable).parent / "openapi-python-client"
    generated = subprocess.run(
        [
            str(generator),
            "generate",
            "--url",
            f"{stack.rest_url}/openapi.json",
            "--config",
            str(work / "config.yaml"),
            "--meta",
            "none",
            "--output-path",
            str(work / PACKAGE),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    sys.path.insert(0, str(work))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(work))
        for name in [m for m in sys.modules if m.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def test_a_generated_client_creates_and_reads_a_user_through_the_gateway(
    client_package: ModuleType, stack: LocalStack
) -> None:
    create_user = importlib.import_module(f"{PACKAGE}.api.users_service.create_user")
    get_user = importlib.import_module(f"{PACKAGE}.api.users_service.get_user")
    models = importlib.import_module(f"{PACKAGE}.models")
    wallet = new_wallet_address()
    client = client_package.Client(base_url=stack.rest_url)

    created = create_user.sync_detailed(
        client=client, body=models.CreateUserRequest(wallet_address=wallet)
    )
    read = get_user.sync(client=client, wallet_address=wallet)

    assert created.status_code == 200
    assert isinstance(created.parsed, models.CreateUserResponse)
    assert created.parsed.user.wallet_address == wallet
    assert isinstance(read, models.GetUserResponse)
    assert read.user.wallet_address == wallet
    assert read.user.create_time == created.parsed.user.create_time


def test_a_generated_client_parses_an_error_into_the_status_model(
    client_package: ModuleType, stack: LocalStack
) -> None:
    get_user = importlib.import_module(f"{PACKAGE}.api.users_service.get_user")
    models = importlib.import_module(f"{PACKAGE}.models")
    client = client_package.Client(base_url=stack.rest_url)

    missing = get_user.sync_detailed(client=client, wallet_address=new_wallet_address())

    assert missing.status_code == 404
    assert isinstance(missing.parsed, models.Status)
    assert missing.parsed.code == 5
    assert missing.parsed.details[0].reason == "USER_NOT_FOUND"
