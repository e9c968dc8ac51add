"""Authorization: enforces each RPC's declared access rule, `option (r3mes.common.v1.access)`.

The rule is read from the method's descriptor, so it is declared once, in the proto, where
clients in other languages can see it too. An r3mes RPC without a rule is refused to everyone.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from google.protobuf import descriptor_pool
from r3mes.common.v1 import options_pb2

from services.core.auth import Principal, PrincipalKind
from services.core.errors import PermissionDenied, Unauthenticated

# Health checks and reflection are infrastructure, open to every caller as gRPC defines them.
OUR_PACKAGE_PREFIX = "r3mes."


def authorize_call(method_name: str, principal: Principal, request: Any) -> None:
    """The chain's last step: `method_name` is grpc's `/package.Service/Method`."""
    full_name = _full_name(method_name)
    if full_name.startswith(OUR_PACKAGE_PREFIX):
        authorize(access_rule(full_name), principal, request)


@cache
def _full_name(method_name: str) -> str:
    return method_name.lstrip("/").replace("/", ".")


@cache
def access_rule(full_method_name: str) -> options_pb2.AccessRule:
    method = descriptor_pool.Default().FindMethodByName(full_method_name)
    rule: options_pb2.AccessRule = method.GetOptions().Extensions[options_pb2.access]
    return rule


def authorize(rule: options_pb2.AccessRule, principal: Principal, request: Any) -> None:
    """Raise unless `principal` may make this call; internal callers may make every declared one."""
    if rule.access == options_pb2.ACCESS_UNSPECIFIED:
        raise PermissionDenied("this method declares no access rule", reason="ACCESS_NOT_DECLARED")
    if rule.access == options_pb2.ACCESS_PUBLIC or principal.kind is PrincipalKind.INTERNAL:
        return
    # Checked before "anonymous": no API key opens an internal method, so asking for one misleads.
    if rule.access == options_pb2.ACCESS_INTERNAL:
        raise PermissionDenied("this method is for internal callers only", reason="INTERNAL_ONLY")
    if principal.kind is PrincipalKind.ANONYMOUS:
        raise Unauthenticated("this method needs an API key", reason="CREDENTIALS_MISSING")
    wallet = getattr(request, rule.wallet_field, None)
    if wallet == "":
        # Left empty (only where the field is not REQUIRED): the caller's own wallet, so a
        # client holding only a key (an OpenAI-style client) need not know its address.
        setattr(request, rule.wallet_field, principal.wallet_address)
    elif wallet != principal.wallet_address:
        raise PermissionDenied("the API key belongs to another wallet", reason="WRONG_WALLET")
