"""The Makefile builds the console again when either of its outputs is gone: web/dist (the
console) or web/dist-test (the browser tests' stand-in for Keplr), even when the other is still
there and newer than every source. Checked with `make -n` (what make would run) on a copy of the
Makefile beside a web/ folder of empty files of known ages."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.paths import ROOT

BUILD = "cd web && npm run --silent build"
SOURCES = [
    "package.json",
    "package-lock.json",
    "node_modules/.package-lock.json",  # npm ci's stamp, newer than the two above
    "src/main.ts",
    "test-wallet/test-wallet.ts",
    "index.html",
    "tsconfig.json",
    "vite.config.ts",
    "vite.test-wallet.config.ts",
]
OUTPUTS = ["dist/.built", "dist-test/test-wallet.js"]


@pytest.fixture
def built(tmp_path: Path) -> Path:
    """A folder where `make web` has nothing to do: every output newer than every source."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    for age, name in enumerate(reversed(SOURCES + OUTPUTS)):
        path = tmp_path / "web" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        when = 1_700_000_000 - 10 * age  # the later in the list, the newer
        os.utime(path, (when, when))
    return tmp_path


def would_run(folder: Path) -> list[str]:
    make = shutil.which("make")
    assert make is not None, "no make on the PATH (README, Prerequisites)"
    dry = subprocess.run(
        [make, "--no-print-directory", "-n", "web"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return dry.stdout.splitlines()


def test_nothing_is_built_when_both_outputs_are_newer_than_the_sources(built: Path) -> None:
    assert BUILD not in would_run(built)


@pytest.mark.parametrize("deleted", ["dist", "dist-test"])
def test_deleting_either_output_folder_alone_builds_the_console_once(
    built: Path, deleted: str
) -> None:
    shutil.rmtree(built / "web" / deleted)

    assert would_run(built).count(BUILD) == 1


def test_a_changed_source_builds_the_console_once(built: Path) -> None:
    (built / "web" / "src" / "main.ts").touch()

    assert would_run(built).count(BUILD) == 1
