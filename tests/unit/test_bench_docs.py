"""docs/performance.md shows commands the benchmark accepts and names what the code defines."""

from __future__ import annotations

import re
import shlex

from bench import noop_server, requestpath
from gateway.paths import ROOT

DOC = (ROOT / "docs" / "performance.md").read_text()


def shell_lines() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", DOC, re.DOTALL)
    return [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]


def test_every_documented_requestpath_command_line_is_accepted_by_the_benchmark() -> None:
    commands = [line for line in shell_lines() if "-m bench.requestpath" in line]
    assert len(commands) >= 3

    for command in commands:
        arguments = shlex.split(command.split("-m bench.requestpath", 1)[1])
        requestpath.parser().parse_args(arguments)  # exits (fails the test) on a bad option


def test_every_make_target_the_doc_names_exists() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"`make ([a-z-]+)`", DOC)) | {
        line.split()[1] for line in shell_lines() if line.startswith("make ")
    }

    assert {"bench", "bench-tools", "install"} <= targets
    for target in targets:
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), f"no `make {target}`"


def test_the_doc_names_the_no_op_method_and_the_default_database_the_code_uses() -> None:
    assert f"`{noop_server.FULL_METHOD}`" in DOC
    assert f"`{requestpath.POSTGRES_URL}`" in DOC
