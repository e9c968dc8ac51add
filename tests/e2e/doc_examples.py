"""The shell examples of README.md and docs/*.md, read so a test can run each one.

An example is a `curl` or `grpcurl` command in a ```sh block; the comment lines right after it
are what it answers: `# 200 {...}` (curl: HTTP status, then the JSON body) or `# {...}` / plain
text (grpcurl, or curl without a status). Other lines of the block (variables, `make ...`) run
as they are, before it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)
_COMMANDS = ("curl ", "grpcurl ")
# Values that say what happened: compared exactly. Every other scalar only by its JSON type.
EXACT_KEYS = frozenset({"code", "reason", "domain", "@type", "status", "field", "not_serving"})


@dataclass(frozen=True)
class Example:
    document: str
    setup: list[str]  # the block's lines before this command: variables, earlier commands
    command: str
    expected_status: int | None
    expected: str

    @property
    def is_curl(self) -> bool:
        return self.command.startswith("curl ")

    def __str__(self) -> str:
        return f"{self.document}: {self.command}"


def _logical_lines(block: str) -> list[str]:
    """Lines with their `\\` continuations joined."""
    lines: list[str] = []
    pending = ""
    for line in block.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1].rstrip() + " "
            continue
        lines.append(pending + line.strip() if pending else line)
        pending = ""
    return lines


def _split_expectation(comment: str) -> tuple[int | None, str]:
    status, _, rest = comment.partition(" ")
    if status.isdigit() and len(status) == 3:
        return int(status), rest.strip()
    return None, comment.strip()


def examples() -> list[Example]:
    found = []
    for document in DOCUMENTS:
        name = str(document.relative_to(ROOT))
        for block in _BLOCK.findall(document.read_text()):
            lines = _logical_lines(block)
            setup: list[str] = []
            for i, line in enumerate(lines):
                stripped = line.strip()
                if not stripped or stripped.startswith("#"):
                    continue
                if not stripped.startswith(_COMMANDS):
                    setup.append(stripped)
                    continue
                # An earlier call may be what this one builds on (a user created, then read).
                # `curl ...      # LIVE`: a short answer may stand on the command's own line.
                stripped, _, inline = stripped.partition("  # ")
                stripped = stripped.strip()
                comments = [inline.strip()] if inline else []
                for following in lines[i + 1 :]:
                    if not following.strip().startswith("#"):
                        break
                    comments.append(following.strip().removeprefix("#").strip())
                status, expected = _split_expectation(" ".join(comments))
                found.append(Example(name, list(setup), stripped, status, expected))
                setup.append(f"{stripped} > /dev/null")
    return found


def same_shape(expected: Any, actual: Any, where: str = "$") -> list[str]:
    """Where `actual` differs from the documented `expected`: keys, types, exact values."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: documented an object, got {actual!r}"]
        problems = []
        if set(expected) != set(actual):
            problems.append(f"{where}: documented keys {sorted(expected)}, got {sorted(actual)}")
        for key in set(expected) & set(actual):
            if key in EXACT_KEYS and not isinstance(expected[key], dict | list):
                if expected[key] != actual[key]:
                    problems.append(
                        f"{where}.{key}: documented {expected[key]!r}, got {actual[key]!r}"
                    )
            else:
                problems += same_shape(expected[key], actual[key], f"{where}.{key}")
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(expected) != len(actual):
            return [f"{where}: documented {len(expected)} items, got {actual!r}"]
        return [
            p
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for p in same_shape(e, a, f"{where}[{i}]")
        ]
    if type(expected) is not type(actual):
        return [f"{where}: documented {expected!r}, got {actual!r}"]
    return []
