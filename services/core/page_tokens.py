"""Page tokens of keyset pagination (AIP-158): opaque, bound to the request that issued them.

A token carries the key of the last item of its page (the cursor) and a fingerprint of the
request's other fields, signed with HMAC-SHA256. A token from another request (other filter,
other method) or one that was altered is INVALID_ARGUMENT naming `page_token`; `page_size` may
change between pages, as AIP-158 allows. Page sizes take their bounds and default from the
proto's `(r3mes.common.v1.rules)` on the `page_size` field, the one place they are declared.

Hand-written: no library signs keyset cursors bound to a protobuf request; the parts are
hashlib, hmac and json.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from google.protobuf.message import Message
from r3mes.common.v1 import options_pb2

from services.core.errors import InvalidArgument
from services.core.pagination import Cursor, CursorValue, Page, PageRequest
from services.core.settings import Settings

PAGE_SIZE_FIELD = "page_size"
PAGE_TOKEN_FIELD = "page_token"  # noqa: S105 (a field name, not a secret)
_SIGNATURE_BYTES = 16  # 128 bits of HMAC-SHA256: forging one is out of reach


class PageTokens:
    """Issues and checks the page tokens of every List RPC of one service."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("a page token secret needs at least 16 bytes")
        self._secret = secret

    def request_of(self, message: Message) -> PageRequest:
        """The page a List request asks for; raises InvalidArgument for a bad page token."""
        size = page_size_of(message)
        token: str = getattr(message, PAGE_TOKEN_FIELD)
        if not token:
            return PageRequest(size)
        return PageRequest(size, self._cursor_of(token, _fingerprint(message)))

    def next_token(self, message: Message, page: Page[Any]) -> str:
        """The `next_page_token` of a response: empty on the last page."""
        if page.next_after is None:
            return ""
        payload = json.dumps(
            {"r": _fingerprint(message), "a": [_encode(value) for value in page.next_after]},
            separators=(",", ":"),
        ).encode()
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def _cursor_of(self, token: str, fingerprint: str) -> Cursor:
        encoded_payload, dot, encoded_signature = token.partition(".")
        try:
            payload = _unb64(encoded_payload)
            signature = _unb64(encoded_signature)
        except (binascii.Error, ValueError):
            raise _bad_token("is not a page token of this service") from None
        if not dot or not hmac.compare_digest(signature, self._sign(payload)):
            raise _bad_token("is not a page token of this service (altered or foreign)")
        content = json.loads(payload)
        if content["r"] != fingerprint:
            raise _bad_token("was issued for a different request; send the same other fields")
        return tuple(_decode(value) for value in content["a"])

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]


def page_size_of(message: Message) -> int:
    """The request's page size, or the default its proto rules declare for 0 (unset).

    Bounds are enforced before any handler runs, by the validation interceptor."""
    field = message.DESCRIPTOR.fields_by_name[PAGE_SIZE_FIELD]
    rules = field.GetOptions().Extensions[options_pb2.rules]
    size: int = getattr(message, PAGE_SIZE_FIELD)
    if size == 0 and rules.HasField("default_value"):
        return int(rules.default_value)
    return size


def _fingerprint(message: Message) -> str:
    """The request type and every field but the page size and token, hashed."""
    other_fields = type(message)()
    other_fields.CopyFrom(message)
    other_fields.ClearField(PAGE_SIZE_FIELD)
    other_fields.ClearField(PAGE_TOKEN_FIELD)
    digest = hashlib.sha256(message.DESCRIPTOR.full_name.encode())
    digest.update(other_fields.SerializeToString(deterministic=True))
    return digest.hexdigest()[:32]


def _encode(value: CursorValue) -> list[str | int]:
    if isinstance(value, datetime):
        return ["t", value.isoformat()]
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"a cursor holds ints, strings and datetimes, not {type(value)}")
    return ["i", value] if isinstance(value, int) else ["s", value]


def _decode(encoded: Sequence[str | int]) -> CursorValue:
    kind, value = encoded
    if kind == "t":
        return datetime.fromisoformat(str(value))
    return value


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _bad_token(problem: str) -> InvalidArgument:
    return InvalidArgument.for_field(PAGE_TOKEN_FIELD, problem)


def page_tokens_from_settings(settings: Settings) -> PageTokens:
    """Every replica must sign alike, so the key is a setting, or derived from the internal
    token they share; with neither, tokens work only on the process that issued them."""
    if settings.page_token_secret is not None:
        return PageTokens(settings.page_token_secret.get_secret_value().encode())
    internal_token = settings.internal_token_value()
    if internal_token is not None:
        derived = hmac.new(internal_token.encode(), b"r3mes page tokens", hashlib.sha256)
        return PageTokens(derived.digest())
    return PageTokens(secrets.token_bytes(32))
