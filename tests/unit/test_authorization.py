"""Access rules: every access level against every kind of caller, and the rules our RPCs declare."""

from __future__ import annotations

import importlib

import pytest
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import ServiceDescriptor
from r3mes.common.v1 import options_pb2
from r3mes.credits.v1 import credits_pb2

from services.core.auth import ANONYMOUS, INTERNAL, Principal
from services.core.errors import PermissionDenied, R3mesError, Unauthenticated
from services.core.interceptors.authorization import access_rule, authorize
from services.core.registry import SERVICES as REGISTERED
from services.core.servicespec import ServiceSpec
from services.core.testing import new_wallet_address

WALLET_A = new_wallet_address()
WALLET_B = new_wallet_address()
CALLERS = {
    "anonymous": ANONYMOUS,
    "internal": INTERNAL,
    "wallet A": Principal.wallet(WALLET_A),
}
# The request of a call on wallet A or on wallet B.
ON_A = credits_pb2.ListLedgerEntriesRequest(wallet_address=WALLET_A)
ON_B = credits_pb2.ListLedgerEntriesRequest(wallet_address=WALLET_B)

PUBLIC = options_pb2.AccessRule(access=options_pb2.ACCESS_PUBLIC)
OWN_WALLET = options_pb2.AccessRule(
    access=options_pb2.ACCESS_OWN_WALLET, wallet_field="wallet_address"
)
INTERNAL_ONLY = options_pb2.AccessRule(access=options_pb2.ACCESS_INTERNAL)
UNDECLARED = options_pb2.AccessRule()

ALLOWED = None
Outcome = tuple[type[R3mesError], str] | None

CASES: list[tuple[str, options_pb2.AccessRule, str, bool, Outcome]] = [
    # (rule name, rule, caller, acts on wallet A?, outcome)
    ("public", PUBLIC, "anonymous", True, ALLOWED),
    ("public", PUBLIC, "internal", True, ALLOWED),
    ("public", PUBLIC, "wallet A", True, ALLOWED),
    ("public", PUBLIC, "wallet A", False, ALLOWED),
    ("own wallet", OWN_WALLET, "anonymous", True, (Unauthenticated, "CREDENTIALS_MISSING")),
    ("own wallet", OWN_WALLET, "internal", True, ALLOWED),
    ("own wallet", OWN_WALLET, "internal", False, ALLOWED),
    ("own wallet", OWN_WALLET, "wallet A", True, ALLOWED),
    ("own wallet", OWN_WALLET, "wallet A", False, (PermissionDenied, "WRONG_WALLET")),
    ("internal", INTERNAL_ONLY, "anonymous", True, (PermissionDenied, "INTERNAL_ONLY")),
    ("internal", INTERNAL_ONLY, "internal", True, ALLOWED),
    ("internal", INTERNAL_ONLY, "wallet A", True, (PermissionDenied, "INTERNAL_ONLY")),
    ("internal", INTERNAL_ONLY, "wallet A", False, (PermissionDenied, "INTERNAL_ONLY")),
    ("undeclared", UNDECLARED, "anonymous", True, (PermissionDenied, "ACCESS_NOT_DECLARED")),
    ("undeclared", UNDECLARED, "wallet A", True, (PermissionDenied, "ACCESS_NOT_DECLARED")),
]


@pytest.mark.parametrize(
    ("rule", "caller", "on_own_wallet", "outcome"),
    [
        pytest.param(rule, caller, own, outcome, id=f"{name}-{caller}-{own}")
        for name, rule, caller, own, outcome in CASES
    ],
)
def test_each_access_level_admits_exactly_its_callers(
    rule: options_pb2.AccessRule, caller: str, on_own_wallet: bool, outcome: Outcome
) -> None:
    request = ON_A if on_own_wallet else ON_B
    if outcome is ALLOWED:
        authorize(rule, CALLERS[caller], request)
        return
    error_class, reason = outcome
    with pytest.raises(error_class) as raised:
        authorize(rule, CALLERS[caller], request)
    assert raised.value.reason == reason


def test_an_rpc_without_a_declared_rule_is_refused_even_to_internal_callers() -> None:
    with pytest.raises(PermissionDenied) as raised:
        authorize(UNDECLARED, INTERNAL, ON_A)
    assert raised.value.reason == "ACCESS_NOT_DECLARED"


def test_a_wallet_key_on_a_request_without_the_wallet_field_is_wrong_wallet() -> None:
    with pytest.raises(PermissionDenied) as raised:
        authorize(OWN_WALLET, Principal.wallet(WALLET_A), credits_pb2.GetCreditsTotalRequest())
    assert raised.value.reason == "WRONG_WALLET"


def registered(spec: ServiceSpec) -> ServiceDescriptor:
    # Its generated module adds its proto file to the default pool (r3mes/<name>/v1/<name>.proto).
    importlib.import_module(f"r3mes.{spec.name}.v1.{spec.name}_pb2")
    return descriptor_pool.Default().FindServiceByName(spec.proto_service)


SERVICES = [registered(spec) for spec in REGISTERED]


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_every_rpc_of_ours_declares_a_rule_and_own_wallet_rules_name_a_real_wallet_field(
    service: ServiceDescriptor,
) -> None:
    for method in service.methods:
        rule = access_rule(method.full_name)
        assert rule.access != options_pb2.ACCESS_UNSPECIFIED, method.full_name
        if rule.access == options_pb2.ACCESS_OWN_WALLET:
            assert rule.wallet_field in method.input_type.fields_by_name, method.full_name
        else:
            assert rule.wallet_field == "", method.full_name


def test_the_rule_read_for_an_rpc_is_the_one_its_proto_declares() -> None:
    grant = access_rule("r3mes.credits.v1.CreditsService.GrantCredits")
    ledger = access_rule("r3mes.credits.v1.CreditsService.ListLedgerEntries")
    total = access_rule("r3mes.credits.v1.CreditsService.GetCreditsTotal")

    assert grant == INTERNAL_ONLY
    assert ledger == options_pb2.AccessRule(
        access=options_pb2.ACCESS_OWN_WALLET, wallet_field="wallet_address", rate_limit="read"
    )
    assert total == options_pb2.AccessRule(access=options_pb2.ACCESS_PUBLIC, rate_limit="read")
