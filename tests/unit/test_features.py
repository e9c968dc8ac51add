"""Feature flags: off unless set, the file's flags over the settings', a broken file changing
nothing, a removed one giving its flags up."""

from __future__ import annotations

import json
from pathlib import Path

from services.core.features import Features


def test_a_flag_is_off_unless_set_and_the_settings_flags_hold_without_a_file() -> None:
    features = Features({"users.on": True, "users.off": False})

    assert [features.enabled(n) for n in ("users.on", "users.off", "users.unset")] == [
        True,
        False,
        False,
    ]


def test_the_files_flags_win_a_broken_file_keeps_them_and_a_removed_one_gives_them_up(
    tmp_path: Path,
) -> None:
    file = tmp_path / "features.json"
    features = Features({"users.flag": False}, file)
    seen = [features.enabled("users.flag")]
    file.write_text(json.dumps({"users.flag": True}))
    seen.append(features.enabled("users.flag"))
    file.write_text('{"users.flag": tru')
    seen.append(features.enabled("users.flag"))
    file.write_text(json.dumps({"users.flag": "yes"}))
    seen.append(features.enabled("users.flag"))
    file.unlink()
    seen.append(features.enabled("users.flag"))

    assert seen == [False, True, True, True, False]
