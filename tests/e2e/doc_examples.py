"""The shell examples of README.md and docs/*.md, read in the order a newcomer reads them, so a
test can run them as that reader would: once each, one after another, in one shell.

An example is a `curl` or `grpcurl` command (`.venv/bin/grpcurl`, as the docs write it) in a
```sh block; the comment lines right after it are what it answers: `# 200 {...}` (curl: HTTP
status, then the JSON body) or `# {...}` / plain text (grpcurl, or curl without a status). The
other lines of such a block (variables, `X=$(...)`) run as they are, where they stand. Blocks
without an example (lists of `make` targets, say) are for reading only and never run.

Reader order: README.md, then the documents in the order README's "Documentation" lists them,
then any other docs/*.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.paths import ROOT

_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)
_LISTED = re.compile(r"^- `(docs/[^`]+\.md)`", re.MULTILINE)
_COMMANDS = ("curl ", "grpcurl ", ".venv/bin/grpcurl ")
# Values that say what happened: compared exactly. Every other scalar only by its JSON type
# (times and server-issued ids differ on every run).
EXACT_KEYS = frozenset(
    {"code", "reason", "domain", "@type", "status", "field", "not_serving", "state", "kind"}
)
# Amounts of credit are what the examples of money are about: compared exactly too.
_EXACT_SUFFIXES = ("micro_credits", "MicroCredits")


def reading_order() -> list[Path]:
    readme = ROOT / "README.md"
    section = readme.read_text().partition("## Documentation")[2]
    listed = [ROOT / name for name in _LISTED.findall(section)]
    rest = [p for p in sorted((ROOT / "docs").glob("*.md")) if p not in listed]
    return [readme, *listed, *rest]


@dataclass(frozen=True)
class Example:
    document: str
    command: str
    expected_status: int | None
    expected: str

    @property
    def is_curl(self) -> bool:
        return self.command.startswith("curl ")

    def __str__(self) -> str:
        return f"{self.document}: {self.command}"


# What a reader does, in order: a line they run as it is, or an example whose answer they check.
Step = str | Example


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


def _block_steps(document: str, block: str) -> list[Step]:
    lines = _logical_lines(block)
    steps: list[Step] = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not stripped.startswith(_COMMANDS):
            steps.append(stripped)
            continue
        # `curl ...      # LIVE`: a short answer may stand on the command's own line.
        command, _, inline = stripped.partition("  # ")
        comments = [inline.strip()] if inline else []
        for following in lines[i + 1 :]:
            if not following.strip().startswith("#"):
                break
            comments.append(following.strip().removeprefix("#").strip())
        status, expected = _split_expectation(" ".join(comments))
        steps.append(Example(document, command.strip(), status, expected))
    return steps


def reading() -> list[Step]:
    steps: list[Step] = []
    for document in reading_order():
        name = str(document.relative_to(ROOT))
        for block in _BLOCK.findall(document.read_text()):
            block_steps = _block_steps(name, block)
            if any(isinstance(step, Example) for step in block_steps):
                steps += block_steps
    return steps


def examples() -> list[Example]:
    return [step for step in reading() if isinstance(step, Example)]


def same_shape(expected: Any, actual: Any, where: str = "$") -> list[str]:
    """Where `actual` differs from the documented `expected`: keys, types, exact values."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: documented an object, got {actual!r}"]
        problems = []
        if set(expected) != set(actual):
            problems.append(f"{where}: documented keys {sorted(expected)}, got {sorted(actual)}")
        for key in set(expected) & set(actual):
            exact = key in EXACT_KEYS or key.endswith(_EXACT_SUFFIXES)
            if exact and not isinstance(expected[key], dict | list):
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
