"""Generated documentation stays in step with the code."""

from pathlib import Path

from tools import settings_doc

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_configuration_reference_lists_every_setting_as_the_code_defines_it() -> None:
    written = (DOCS / "configuration.md").read_text()

    assert written == settings_doc.render(), (
        "run `python -m tools.settings_doc > docs/configuration.md`"
    )
