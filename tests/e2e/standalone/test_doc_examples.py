"""Every curl and grpcurl example of README.md and docs/ runs as a newcomer runs them: in reader
order, each once, in one shell, from the repository's folder, against one fresh suite started with
`make run`'s defaults, without the virtualenv on PATH. Each answers what the docs say: the same
HTTP status (a 409 where the docs show a success fails), a grpcurl that succeeds, the same keys
and value types, and the same codes, reasons, states and amounts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.frontdoor.chat_service import chat_service
from gateway.paths import ROOT
from runner.local_stack import LocalStack, running_stack
from runner.reference import register_node
from runner.run import DEFAULT_CONSOLE_PORT, REFERENCE_NETWORKS, development_environment
from services.core.registry import SERVICES
from services.core.settings import Settings
from tests.e2e.conftest import INTERNAL_TOKEN
from tests.e2e.doc_examples import Example, Step, examples, reading, same_shape

DOCUMENTED_GATEWAY = "127.0.0.1:8080"
DOCUMENTED_CONSOLE = f"127.0.0.1:{DEFAULT_CONSOLE_PORT}"
DOCUMENTED_PORTS = {spec.name: spec.default_port for spec in SERVICES}
_STATUS_MARK = "\n__HTTP_STATUS__ "
BASH = shutil.which("bash") or "/bin/bash"


@dataclass(frozen=True)
class Answer:
    exit_code: int
    stdout: str
    stderr: str


def test_the_docs_have_examples_in_each_document_that_shows_calls() -> None:
    documents = {example.document for example in examples()}

    assert {"README.md", "docs/api.md", "docs/operations.md"} <= documents


def test_the_docs_are_read_readme_first_then_in_the_order_readme_lists_them() -> None:
    documents = list(dict.fromkeys(example.document for example in examples()))

    assert documents[:3] == ["README.md", "docs/api.md", "docs/operations.md"]


def reader_script(steps: list[Step], answers: Path) -> str:
    """One shell script of the whole reading: each example's output and exit code to files."""
    lines = ["set -uo pipefail"]
    for index, step in enumerate(steps):
        if isinstance(step, str):
            lines.append(step)
            continue
        command = step.command
        if step.is_curl:  # curl turns \\n into a newline; to stderr, past any `| grep`
            status = "'%{stderr}\\n__HTTP_STATUS__ %{http_code}'"
            command = f"curl -w {status} " + command.removeprefix("curl ")
        lines += [
            "{ " + command,
            f'}} >"{answers}/{index}.out" 2>"{answers}/{index}.err"',
            f'echo $? >"{answers}/{index}.rc"',
        ]
    return "\n".join(lines)


def on_stack(script: str, stack: LocalStack) -> str:
    """The documented addresses of `make run` become the test suite's free ports."""
    script = script.replace(DOCUMENTED_GATEWAY, stack.gateway_target)
    script = script.replace(DOCUMENTED_CONSOLE, f"127.0.0.1:{stack.ports.console}")
    # Only the ports that listen under the stack's topology: in one process, the first
    # service's alone, so an example calling another service's own port fails as it would
    # for a reader of `make run`.
    listening: set[str] = set()
    for name, port in DOCUMENTED_PORTS.items():
        target = stack.grpc_target(name)
        if target not in listening:
            listening.add(target)
            script = script.replace(f"127.0.0.1:{port}", target)
    return script


def without_the_virtualenv(path: str) -> str:
    """A reader's PATH: the virtualenv is not activated, so only `.venv/bin/...` reaches it."""
    venv_bins = {Path(sys.executable).parent.resolve(), (ROOT / ".venv" / "bin").resolve()}
    kept = [entry for entry in path.split(os.pathsep) if Path(entry).resolve() not in venv_bins]
    return os.pathsep.join(kept)


@pytest.fixture(scope="module")
def docs_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A suite of its own, fresh, with `make run`'s rate limits (whatever this shell sets):
    the docs' fixed wallets and keys meet nothing but what the reading before them did."""
    environment = development_environment(Settings(ratelimit_policies_file=None))
    environment["R3MES_SERVING_PRIVATE_NETWORKS"] = json.dumps(REFERENCE_NETWORKS)
    # Registered once and never beating (make run beats): fresh however long the reading takes.
    environment["R3MES_SERVING_NODE_OFFLINE_AFTER_SECONDS"] = "3600"
    with running_stack(
        tmp_path_factory.mktemp("docs"),
        internal_token=INTERNAL_TOKEN,
        extra_environment=environment,
    ) as running:
        # As `make run` does: the reference node, registered once the suite serves.
        serving = chat_service().name
        register_node(running.grpc_target(serving), INTERNAL_TOKEN, running.start_reference_node())
        yield running


@pytest.fixture(scope="module")
def answers(docs_stack: LocalStack) -> dict[int, Answer]:
    # The stack's folder stands for the repository's: its data/ is the suite's (the admin
    # socket, and `data/internal-token` as `make run` writes it), and .venv/ is the real one.
    folder = docs_stack.work_dir
    (folder / ".venv").symlink_to(ROOT / ".venv")
    (folder / "data" / "internal-token").write_text(INTERNAL_TOKEN + "\n")
    outputs = folder / "answers"
    outputs.mkdir()
    steps = reading()
    environment = {
        **os.environ,
        "PATH": without_the_virtualenv(os.environ["PATH"]),
        # `.venv/bin/python -m tools....` from the repository's folder finds the repository.
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen")]),
    }
    subprocess.run(
        [BASH, "-c", on_stack(reader_script(steps, outputs), docs_stack)],
        cwd=folder,
        env=environment,
        capture_output=True,
        check=False,
        timeout=600,
    )
    found = {}
    for index, step in enumerate(steps):
        if isinstance(step, Example) and (outputs / f"{index}.rc").exists():
            found[index] = Answer(
                int((outputs / f"{index}.rc").read_text()),
                (outputs / f"{index}.out").read_text(),
                (outputs / f"{index}.err").read_text(),
            )
    return found


def _indexed_examples() -> list[tuple[int, Example]]:
    return [(i, step) for i, step in enumerate(reading()) if isinstance(step, Example)]


@pytest.mark.parametrize(
    ("index", "example"), _indexed_examples(), ids=[str(e) for _, e in _indexed_examples()]
)
def test_a_documented_example_answers_as_documented(
    index: int, example: Example, answers: dict[int, Answer]
) -> None:
    assert example.expected, f"{example}: the docs must say what it answers"
    assert index in answers, f"{example}: the reading stopped before it"
    answer = answers[index]
    output = answer.stdout
    if example.is_curl:
        status = answer.stderr.rpartition(_STATUS_MARK)[2]
        assert answer.exit_code == 0, f"{example}: exit {answer.exit_code}\n{answer.stderr}"
        if example.expected_status is not None:
            assert int(status) == example.expected_status, f"{example}: {output}"
    elif example.expected.startswith(("{", "[")):
        assert answer.exit_code == 0, f"{example}: exit {answer.exit_code}\n{answer.stderr}"
    else:
        output = answer.stdout + answer.stderr
    if example.expected.startswith(("{", "[")):
        problems = same_shape(json.loads(example.expected), json.loads(output))
        assert problems == [], f"{example}\n{output}"
    else:
        assert output.split() == example.expected.split(), example
