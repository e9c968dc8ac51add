"""API keys and the challenges that prove wallet ownership. No grpc, no sqlalchemy.

A key's state is not stored: it follows from its revoke and expire times and the clock, so a key
expires on time without any job having to mark it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from services.core.errors import (
    ErrorDetails,
    FailedPrecondition,
    NotFound,
    QuotaViolation,
    ResourceExhausted,
    Unauthenticated,
)


class APIKeyState(Enum):
    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"


@dataclass(frozen=True)
class APIKey:
    """A key without its secret: only `secret_digest(secret)` is ever stored."""

    key_id: str
    wallet_address: str
    name: str
    key_prefix: str
    create_time: datetime
    expire_time: datetime | None = None
    revoke_time: datetime | None = None
    last_used_time: datetime | None = None

    def state_at(self, now: datetime) -> APIKeyState:
        if self.revoke_time is not None:
            return APIKeyState.REVOKED
        if self.expire_time is not None and self.expire_time <= now:
            return APIKeyState.EXPIRED
        return APIKeyState.ACTIVE


@dataclass(frozen=True)
class IssuedKey:
    """A key just created, with its secret: the one time the secret leaves the service."""

    api_key: APIKey
    secret: str


@dataclass(frozen=True)
class Challenge:
    challenge_id: str
    wallet_address: str
    message: str
    create_time: datetime
    expire_time: datetime
    used: bool = False


@dataclass(frozen=True)
class Validation:
    """The answer of ValidateAPIKey: the key's state, None when there is no such key (never
    issued, deleted, or not even well-formed); the wallet, key id and expiry only when ACTIVE."""

    state: APIKeyState | None
    wallet_address: str | None = None
    key_id: str | None = None
    expire_time: datetime | None = None


UNKNOWN_KEY = Validation(None)


def validation_of(key: APIKey, now: datetime) -> Validation:
    state = key.state_at(now)
    if state is not APIKeyState.ACTIVE:
        return Validation(state)
    return Validation(state, key.wallet_address, key.key_id, key.expire_time)


def secret_digest(secret: str) -> str:
    """What is stored of a key: its SHA-256, hex. A key carries 190 random bits, so a plain
    (unsalted, fast) hash is enough: there is no dictionary to run against it."""
    return hashlib.sha256(secret.encode()).hexdigest()


def challenge_message(wallet_address: str, nonce: str, expire_time: datetime) -> str:
    """The text a wallet signs: it names the service, the wallet, a nonce and the expiry, so a
    signature made for anything else (or anyone else) never answers a challenge."""
    return (
        "Sign in to R3MES to create an API key.\n"
        f"Wallet: {wallet_address}\n"
        f"Nonce: {nonce}\n"
        f"Expires: {expire_time.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    )


class APIKeyNotFound(NotFound):
    reason = "API_KEY_NOT_FOUND"

    def __init__(self, key_id: str) -> None:
        super().__init__(f"the wallet has no API key {key_id}")


class ChallengeNotFound(NotFound):
    reason = "CHALLENGE_NOT_FOUND"

    def __init__(self) -> None:
        super().__init__("no such challenge for this wallet")


class ChallengeExpired(FailedPrecondition):
    reason = "CHALLENGE_EXPIRED"

    def __init__(self) -> None:
        super().__init__("the challenge has expired; ask for a new one")


class ChallengeAlreadyUsed(FailedPrecondition):
    reason = "CHALLENGE_ALREADY_USED"

    def __init__(self) -> None:
        super().__init__("the challenge was already answered; ask for a new one")


class SignatureInvalid(Unauthenticated):
    reason = "SIGNATURE_INVALID"

    def __init__(self) -> None:
        super().__init__("the signature does not sign this challenge with this public key")


class PublicKeyMismatch(Unauthenticated):
    reason = "PUBLIC_KEY_MISMATCH"

    def __init__(self) -> None:
        super().__init__("the public key is not the key of this wallet")


class APIKeyLimitReached(ResourceExhausted):
    reason = "API_KEY_LIMIT_REACHED"

    def __init__(self, wallet_address: str, limit: int) -> None:
        super().__init__(
            f"the wallet already holds {limit} active API keys; revoke or delete one first",
            details=ErrorDetails(
                quota_violations=[
                    QuotaViolation(
                        subject=f"wallet:{wallet_address}",
                        description=f"at most {limit} active API keys per wallet",
                    )
                ]
            ),
        )
