"""The interceptor chain (ARCHITECTURE section 7): one server interceptor, `RequestChain`, that
runs the steps of the modules beside this one in order (see services.core.interceptors.chain)."""

from __future__ import annotations

from services.core.interceptors.chain import RequestChain

__all__ = ["RequestChain"]
