"""The examples of docs/architecture.md's section on API keys are what the code does."""

from __future__ import annotations

import re
from pathlib import Path

from services.apikeys import wallet_proof
from services.apikeys.usecases import key_hint
from services.core import validators

ARCHITECTURE = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def _section() -> str:
    text = ARCHITECTURE.read_text()
    return text[text.index("## API keys and wallet principals") :]


def test_the_documented_sign_doc_is_the_one_the_service_verifies() -> None:
    section = _section()
    wallet, message = re.findall(
        r"for the wallet\s+`(remes1[a-z0-9]+)`\s+and the message\s+`(\w+)`", section
    )[0]
    documented = re.findall(r"```json\n(.*?)\n```", section, re.DOTALL)[0]

    assert wallet_proof.sign_doc(wallet, message.encode()).decode() == documented


def test_the_documented_key_hint_has_the_shape_of_a_real_one() -> None:
    documented = re.findall(r"\(`(r3mes_\w{4}\.\.\.\w{4})`\)", _section())[0]
    secret = validators.new_api_key()
    hint = key_hint(secret)

    assert len(hint) == len(documented)
    assert hint.startswith(secret[:10])
    assert hint.endswith(secret[-4:])
    assert hint[10:13] == documented[10:13] == "..."
