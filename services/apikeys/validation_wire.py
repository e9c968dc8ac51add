"""A ValidateAPIKey answer on the wire and back: the servicer sends it, and every process that
checks keys over gRPC (services/apikeys/authentication.py) reads it."""

from __future__ import annotations

from r3mes.apikeys.v1 import apikeys_pb2

from services.apikeys.domain import APIKeyState, Validation
from services.core.wire import timestamp, utc_datetime

# The released wire has two enums: APIKeyState for a listed key and ValidationStatus for this
# answer, which adds NOT_FOUND. The domain has one state, and no state (None) for a key that does
# not exist. Merging them on the wire would break released clients, so the one domain state maps
# onto each: onto APIKeyState in the servicer, onto ValidationStatus here, both ways.
_VALIDATION_STATUSES: dict[APIKeyState | None, apikeys_pb2.ValidationStatus.ValueType] = {
    None: apikeys_pb2.VALIDATION_STATUS_NOT_FOUND,
    APIKeyState.ACTIVE: apikeys_pb2.VALIDATION_STATUS_VALID,
    APIKeyState.REVOKED: apikeys_pb2.VALIDATION_STATUS_REVOKED,
    APIKeyState.EXPIRED: apikeys_pb2.VALIDATION_STATUS_EXPIRED,
}
_STATES_OF_STATUSES = {status: state for state, status in _VALIDATION_STATUSES.items()}


def validation_message(validation: Validation) -> apikeys_pb2.ValidateAPIKeyResponse:
    message = apikeys_pb2.ValidateAPIKeyResponse(status=_VALIDATION_STATUSES[validation.state])
    if validation.state is APIKeyState.ACTIVE:
        message.wallet_address = validation.wallet_address or ""
        message.key_id = validation.key_id or ""
        if validation.expire_time is not None:
            message.expire_time.CopyFrom(timestamp(validation.expire_time))
    return message


def validation_of_message(message: apikeys_pb2.ValidateAPIKeyResponse) -> Validation:
    """The answer as the domain has it; a status this build does not know refuses the key."""
    state = _STATES_OF_STATUSES.get(message.status)
    if state is not APIKeyState.ACTIVE:
        return Validation(state)
    expire_time = utc_datetime(message.expire_time) if message.HasField("expire_time") else None
    return Validation(state, message.wallet_address, message.key_id, expire_time)
