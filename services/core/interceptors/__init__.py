"""The interceptor chain, outermost first (ARCHITECTURE section 7), assembled from settings."""

from __future__ import annotations

from collections.abc import Sequence

from grpc_interceptor.server import AsyncServerInterceptor

from services.core.auth import Authenticator
from services.core.interceptors.authentication import AuthenticationInterceptor
from services.core.interceptors.authorization import AuthorizationInterceptor
from services.core.interceptors.context import RequestContextInterceptor
from services.core.interceptors.errors import ErrorMappingInterceptor
from services.core.interceptors.validation import ValidationInterceptor
from services.core.network import IPNetwork


def interceptor_chain(
    error_domain: str,
    authenticators: Sequence[Authenticator],
    trusted_proxies: Sequence[IPNetwork] = (),
) -> list[AsyncServerInterceptor]:
    """The one order every service uses: each later failure is rendered by error mapping, and
    validation runs before authorization so a malformed wallet is a 400, not a 403."""
    return [
        RequestContextInterceptor(trusted_proxies),
        ErrorMappingInterceptor(error_domain),
        AuthenticationInterceptor(authenticators),
        ValidationInterceptor(),
        AuthorizationInterceptor(),
    ]
