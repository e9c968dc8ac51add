"""A ValidateAPIKey answer crosses the wire and comes back as the same domain answer: the one
domain state of a key maps onto the released ValidationStatus enum, both ways."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from r3mes.apikeys.v1 import apikeys_pb2

from services.apikeys.domain import UNKNOWN_KEY, APIKeyState, Validation
from services.apikeys.validation_wire import validation_message, validation_of_message

WALLET = "remes1nmxc98ww6mdvm6h4anee0pxa8cgdezfclgsdxk"


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (
            Validation(APIKeyState.ACTIVE, WALLET, "key-1", datetime(2026, 3, 1, tzinfo=UTC)),
            apikeys_pb2.VALIDATION_STATUS_VALID,
        ),
        (Validation(APIKeyState.ACTIVE, WALLET, "key-2"), apikeys_pb2.VALIDATION_STATUS_VALID),
        (UNKNOWN_KEY, apikeys_pb2.VALIDATION_STATUS_NOT_FOUND),
        (Validation(APIKeyState.REVOKED), apikeys_pb2.VALIDATION_STATUS_REVOKED),
        (Validation(APIKeyState.EXPIRED), apikeys_pb2.VALIDATION_STATUS_EXPIRED),
    ],
    ids=["active", "active-forever", "unknown", "revoked", "expired"],
)
def test_each_answer_is_its_wire_status_and_comes_back_unchanged(
    answer: Validation, status: int
) -> None:
    message = validation_message(answer)

    assert message.status == status
    assert validation_of_message(message) == answer


def test_a_status_this_build_does_not_know_is_an_unknown_key_without_a_wallet() -> None:
    message = apikeys_pb2.ValidateAPIKeyResponse(
        status=apikeys_pb2.ValidationStatus.ValueType(99), wallet_address=WALLET, key_id="k"
    )

    assert validation_of_message(message) == UNKNOWN_KEY
