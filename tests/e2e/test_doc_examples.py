"""Every curl and grpcurl example of README.md and docs/ runs against the suite and answers what
the docs say it answers: the same HTTP status, the same keys and value types, and the same codes,
reasons and statuses."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.admin import ADMIN_SOCKET_NAME
from gateway.local_stack import LocalStack
from services.core.registry import SERVICES
from services.core.testing import new_wallet_address
from tests.e2e.conftest import INTERNAL_TOKEN
from tests.e2e.doc_examples import Example, examples, same_shape

DOCUMENTED_GATEWAY = "127.0.0.1:8080"
DOCUMENTED_PORTS = {spec.name: spec.default_port for spec in SERVICES}
_WALLET_VARIABLE = re.compile(r"^WALLET=(remes1[0-9a-z]+)", re.MULTILINE)
_STATUS_MARK = "\n__HTTP_STATUS__ "
BASH = shutil.which("bash") or "/bin/bash"


def test_the_docs_have_examples_in_each_document_that_shows_calls() -> None:
    documents = {example.document for example in examples()}

    assert {"README.md", "docs/api.md", "docs/operations.md"} <= documents


def script_for(example: Example, stack: LocalStack) -> str:
    command = example.command
    if example.is_curl:
        command += " -w '\\n__HTTP_STATUS__ %{http_code}'"  # curl turns \\n into a newline
    script = "\n".join([*example.setup, command])
    # A fresh wallet per example, so each can create its user whatever ran before it.
    for documented in set(_WALLET_VARIABLE.findall(script)):
        script = script.replace(documented, new_wallet_address())
    script = script.replace(DOCUMENTED_GATEWAY, stack.gateway_target)
    script = script.replace(f"data/{ADMIN_SOCKET_NAME}", str(stack.admin))
    for name, port in DOCUMENTED_PORTS.items():
        script = script.replace(f"127.0.0.1:{port}", stack.grpc_target(name))
    return script


@pytest.mark.parametrize("example", examples(), ids=str)
def test_a_documented_example_answers_as_documented(
    example: Example, stack: LocalStack, tmp_path: Path
) -> None:
    assert example.expected, f"{example}: the docs must say what it answers"
    # `$(cat data/internal-token)` in the docs reads the token `make run` writes there.
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "internal-token").write_text(INTERNAL_TOKEN + "\n")
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}

    ran = subprocess.run(
        [BASH, "-euo", "pipefail", "-c", script_for(example, stack)],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )

    output = ran.stdout
    if example.is_curl:
        output, _, status = output.rpartition(_STATUS_MARK)
        if example.expected_status is not None:
            assert int(status) == example.expected_status, f"{example}: {output}"
    else:
        output = output + ran.stderr
    if example.expected.startswith(("{", "[")):
        problems = same_shape(json.loads(example.expected), json.loads(output))
        assert problems == [], f"{example}\n{output}"
    else:
        assert output.split() == example.expected.split(), example
