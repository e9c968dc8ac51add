"""Requests that do not parse: a caller's mistake (INVALID_ARGUMENT), not a server bug.

grpc calls a method's request deserializer before any interceptor code runs, and a DecodeError
raised there leaves as UNKNOWN naming a Python class, with a traceback in the log per request.
The chain wraps each deserializer so that bytes which do not parse become an `Unparseable`
marker instead, which the validation step refuses like any other bad input.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from google.protobuf.message import DecodeError

from services.core.errors import InvalidArgument

Deserializer = Callable[[bytes], Any]


class Unparseable:
    """Stands for a request message whose bytes are not a valid `type_name`."""

    __slots__ = ("type_name",)

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    def error(self) -> InvalidArgument:
        # The decoder's own message is not repeated: it describes our parser, not the input.
        return InvalidArgument(
            f"the request is not a valid {self.type_name} message", reason="MALFORMED_MESSAGE"
        )


def tolerant(deserializer: Deserializer | None) -> Deserializer | None:
    """`deserializer`, answering an `Unparseable` for bytes it cannot decode."""
    if deserializer is None:  # raw bytes handlers: nothing to parse
        return None
    type_name = _type_name(deserializer)

    def deserialize(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except DecodeError:
            return Unparseable(type_name)

    return deserialize


async def checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """A client stream of requests that raises InvalidArgument at the first one that is bad."""
    async for request in requests:
        if isinstance(request, Unparseable):
            raise request.error()
        yield request


def _type_name(deserializer: Deserializer) -> str:
    # Generated code passes `MessageClass.FromString`, bound to the message class.
    descriptor = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
    full_name = getattr(descriptor, "full_name", None)
    return full_name if isinstance(full_name, str) else "request"
