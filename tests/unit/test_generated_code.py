"""The generated code in gen/ matches protos/, the protos pass buf lint, and they keep every
contract of the released API (buf breaking)."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

from gateway.paths import ROOT
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


def test_the_protos_keep_every_contract_of_the_released_api() -> None:
    result = subprocess.run(
        [sys.executable, str(Path(protos.__file__)), "--breaking"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_a_released_field_given_another_type_fails_the_breaking_check(tmp_path: Path) -> None:
    shutil.copytree(protos.PROTO_ROOT, tmp_path / "protos")
    shutil.copy(ROOT / "buf.yaml", tmp_path)
    users = tmp_path / "protos" / "r3mes" / "users" / "v1" / "users.proto"
    users.write_text(
        users.read_text().replace("int64 active_miners = 2;", "int32 active_miners = 2;")
    )

    result = protos.breaking_changes(tmp_path)

    assert result.returncode != 0
    # file:line:column:message; the line moves with every edit of users.proto, the rest not.
    found = [line.split(":") for line in result.stdout.splitlines()]
    assert [(where[0], where[-1]) for where in found] == [
        (
            "protos/r3mes/users/v1/users.proto",
            'Field "2" with name "active_miners" on message "GetNetworkStatsResponse" changed '
            'type from "int64" to "int32".',
        )
    ]
