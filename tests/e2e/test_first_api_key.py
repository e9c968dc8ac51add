"""A newcomer's first API key: `python -m tools.wallet` and the Python steps of docs/api.md, each
run as a user would against the real gateway, then the key used."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx

from gateway.paths import ROOT
from runner.local_stack import LocalStack
from services.core.tls import client_context

DOCUMENTED_BASE = "http://127.0.0.1:8080"
_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def run_python(arguments: list[str], cwd: Path) -> dict[str, str]:
    """Runs Python as a user would from `cwd` and reads the NAME=value lines it prints."""
    ran = subprocess.run(
        [sys.executable, *arguments], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    return dict(line.split("=", 1) for line in ran.stdout.splitlines())


def keys_of(stack: LocalStack, wallet: str, api_key: str) -> httpx.Response:
    return httpx.get(
        f"{stack.rest_url}/v1/wallets/{wallet}/apikeys",
        headers={"x-api-key": api_key},
        verify=client_context(),
    )


def test_tools_wallet_prints_a_wallet_and_a_key_that_lists_its_keys(stack: LocalStack) -> None:
    printed = run_python(["-m", "tools.wallet", "--base", stack.rest_url], ROOT)

    listed = keys_of(stack, printed["WALLET"], printed["API_KEY"])

    assert set(printed) == {"WALLET", "API_KEY", "PRIVATE_KEY"}
    assert listed.status_code == 200, listed.text
    assert [key["name"] for key in listed.json()["api_keys"]] == ["tools.wallet"]


def test_tools_wallet_signs_again_for_the_same_wallet_with_its_private_key(
    stack: LocalStack,
) -> None:
    first = run_python(["-m", "tools.wallet", "--base", stack.rest_url], ROOT)
    again = run_python(
        [
            "-m",
            "tools.wallet",
            "--base",
            stack.rest_url,
            "--private-key",
            first["PRIVATE_KEY"],
            "--name",
            "second",
        ],
        ROOT,
    )

    listed = keys_of(stack, first["WALLET"], again["API_KEY"])

    assert again["WALLET"] == first["WALLET"]
    assert again["API_KEY"] != first["API_KEY"]
    assert [key["name"] for key in listed.json()["api_keys"]] == ["second", "tools.wallet"]


def test_tools_wallet_says_why_it_could_not_reach_the_gateway_and_exits_non_zero() -> None:
    ran = subprocess.run(
        [sys.executable, "-m", "tools.wallet", "--base", "http://127.0.0.1:9", "--name", "x"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert ran.returncode == 1
    assert ran.stdout == ""
    assert ran.stderr.startswith("tools.wallet: ")


def test_the_python_steps_of_the_docs_make_a_key_that_works(
    stack: LocalStack, tmp_path: Path
) -> None:
    blocks = _PYTHON_BLOCK.findall((ROOT / "docs" / "api.md").read_text())
    (block,) = [block for block in blocks if "createWithSignature" in block]
    script = tmp_path / "first_api_key.py"
    script.write_text(block.replace(DOCUMENTED_BASE, stack.rest_url))

    printed = run_python([str(script)], tmp_path)

    listed = keys_of(stack, printed["WALLET"], printed["API_KEY"])
    assert listed.status_code == 200, listed.text
