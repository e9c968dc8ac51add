"""The generated code in gen/ matches protos/, and the protos pass buf lint."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

from tools import protos


def _differences(left: Path, right: Path) -> list[str]:
    comparison = filecmp.dircmp(left, right, ignore=["__pycache__", ".stamp"])
    found = [
        str(left / n) for n in comparison.left_only + comparison.right_only + comparison.diff_files
    ]
    for name in comparison.common_dirs:
        found += _differences(left / name, right / name)
    return found


def test_generated_code_is_fresh_for_the_current_protos(tmp_path: Path) -> None:
    protos.generate(tmp_path)

    assert _differences(protos.GEN_DIR, tmp_path) == [], "gen/ is stale: run `make protos`"


def test_the_protos_pass_buf_lint() -> None:
    result = subprocess.run(
        [sys.executable, str(Path(protos.__file__)), "--lint"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
