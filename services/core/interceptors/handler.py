"""Calling the next handler of the chain, whatever kind of RPC it serves."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


async def call_next(method: Callable[..., Any], request: Any, context: Any) -> Any:
    """Await a unary handler; hand back a streaming one's async generator as it is.

    Our APIs are unary. The streaming RPCs a server has (reflection, health Watch) are
    infrastructure: they pass through, without the per-call wrapping that awaiting would give.
    """
    result = method(request, context)
    return await result if inspect.isawaitable(result) else result
