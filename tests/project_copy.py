"""A copy of the project's code in a temporary folder, and its tools run there in processes of
their own: for tests that must change what no test may change in the checkout (a planted import,
a whole new service) and show what the project makes of it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from gateway.paths import ROOT

# What the code, its tools and their configuration need: no tests, docs, web or generated code.
PARTS = ("services", "gateway", "runner", "tools", "protos", "pyproject.toml", "buf.yaml")
BIN = Path(sys.executable).parent


def copy_project(destination: Path) -> Path:
    for part in PARTS:
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(
                source, destination / part, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy(source, destination / part)
    return destination


def environment(root: Path, gen: Path) -> dict[str, str]:
    """The copy's code first, and no R3MES_* setting of this process: the copy's defaults."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("R3MES_")}
    return {**inherited, "PYTHONPATH": f"{root}{os.pathsep}{gen}"}


def run_in(
    root: Path, command: list[str], gen: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`command` in `root` with the copy's code imported (and `gen`, by default the checkout's
    generated code, which a copy with protos of its own replaces)."""
    return subprocess.run(
        command,
        cwd=root,
        env=environment(root, gen or ROOT / "gen"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def lint_imports(root: Path, gen: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_in(root, [str(BIN / "lint-imports"), "--no-cache"], gen)
