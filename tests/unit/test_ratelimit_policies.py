"""The policies shipped with the services, and how rates are written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

# Imported for their descriptors, as a server imports its servicers': a method's policy is
# declared in its proto.
from r3mes.apikeys.v1 import apikeys_pb2  # noqa: F401
from r3mes.credits.v1 import credits_pb2  # noqa: F401
from r3mes.users.v1 import users_pb2  # noqa: F401

from services.core.ratelimit import Rate, load_policies
from services.core.ratelimit.policies import LOCAL_POLICIES_FILE, PolicyFileError, parse_rate

USERS = "r3mes.users.v1.UsersService"


@pytest.mark.parametrize(
    "method",
    [
        "/r3mes.apikeys.v1.APIKeysService/CreateAPIKey",
        "/r3mes.apikeys.v1.APIKeysService/CreateChallenge",
        "/r3mes.apikeys.v1.APIKeysService/CreateAPIKeyWithSignature",
    ],
)
def test_issuing_keys_and_the_signature_flow_share_five_calls_a_minute(method: str) -> None:
    policy = load_policies().for_method(method)

    assert (policy.name, policy.rate) == ("credentials", Rate(5, 60.0))
    assert policy.header == '"credentials";q=5;w=60'


def test_reads_get_thirty_a_minute_and_writes_twenty() -> None:
    policies = load_policies()

    assert policies.for_method("/r3mes.users.v1.UsersService/GetUser").rate == Rate(30, 60.0)
    assert policies.for_method("/r3mes.users.v1.UsersService/CreateUser").rate == Rate(20, 60.0)
    # Its proto names no policy (an internal RPC): the file's default, writes.
    assert policies.for_method("/r3mes.credits.v1.CreditsService/GrantCredits").name == "write"


def write_policies(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policies.yaml"
    path.write_text(text)
    return path


def test_a_file_moves_a_single_method_to_another_policy_than_its_protos(tmp_path: Path) -> None:
    path = write_policies(
        tmp_path,
        "policies: {read: 3/minute, write: 3/minute, slow: 1/hour}\ndefault: read\n"
        f"methods: {{{USERS}.GetUser: slow}}\n",
    )

    policies = load_policies(path)
    policies.check([USERS])

    assert policies.for_method(f"/{USERS}/GetUser").name == "slow"
    assert policies.for_method(f"/{USERS}/GetNetworkStats").name == "read"


def test_a_service_whose_proto_names_a_policy_the_file_lacks_is_refused(tmp_path: Path) -> None:
    policies = load_policies(
        write_policies(tmp_path, "policies: {write: 3/minute}\ndefault: write\n")
    )

    with pytest.raises(PolicyFileError, match="declares the policy 'read'"):
        policies.check([USERS])


def test_a_file_naming_a_method_its_service_does_not_have_is_refused(tmp_path: Path) -> None:
    path = write_policies(
        tmp_path,
        f"policies: {{read: 3/minute, write: 3/minute}}\ndefault: read\n"
        f"methods: {{{USERS}.GetUsr: read}}\n",
    )
    policies = load_policies(path)

    with pytest.raises(PolicyFileError, match="GetUsr' is not a method the protos declare"):
        policies.check([USERS])
    policies.check(["r3mes.credits.v1.CreditsService"])  # another process's concern


def test_internal_callers_are_exempt_by_default() -> None:
    assert load_policies().internal is None


def test_failed_authentications_get_ten_a_minute_per_address() -> None:
    failed = load_policies().failed_authentication

    assert failed is not None
    assert (failed.name, failed.rate, failed.header) == (
        "auth_failures",
        Rate(10, 60.0),
        '"auth_failures";q=10;w=60',
    )


def test_the_local_development_policies_put_every_method_under_the_policy_production_does() -> None:
    production, local = load_policies(), load_policies(LOCAL_POLICIES_FILE)

    assert set(local.named) == set(production.named)
    assert {m: p.name for m, p in local.methods.items()} == {
        m: p.name for m, p in production.methods.items()
    }
    assert (local.default.name, local.internal) == (production.default.name, production.internal)
    assert local.failed_authentication is not None
    assert production.failed_authentication is not None
    assert local.failed_authentication.name == production.failed_authentication.name


def test_the_local_development_policies_are_written_out_as_the_banner_shows_them() -> None:
    assert str(load_policies()) == (
        "auth_failures 10/minute, chat 20/minute, credentials 5/minute, read 30/minute, "
        "write 20/minute"
    )
    assert str(load_policies(LOCAL_POLICIES_FILE)) == (
        "auth_failures 100/minute, chat 300/minute, credentials 60/minute, read 600/minute, "
        "write 300/minute"
    )


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("5/minute", Rate(5, 60.0)),
        ("1/second", Rate(1, 1.0)),
        (" 100 / hour ", Rate(100, 3600.0)),
        ("100/30s", Rate(100, 30.0)),
        ("3/1.5s", Rate(3, 1.5)),
    ],
)
def test_a_rate_is_calls_per_period(text: str, rate: Rate) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["5", "5/day", "-1/minute", "0/minute", "5/0s", "five/minute", 5])
def test_a_malformed_rate_is_refused(text: object) -> None:
    with pytest.raises(ValueError, match="rate"):
        parse_rate(text)


DOC = Path(__file__).resolve().parents[2] / "docs" / "ratelimits.md"


def documented_block(language: str) -> str:
    match = re.search(rf"```{language}\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert match is not None
    return match[1]


def test_the_documented_policy_file_loads_as_described(tmp_path: Path) -> None:
    path = tmp_path / "policies.yaml"
    path.write_text(documented_block("yaml"))

    policies = load_policies(path)

    assert policies.for_method("/r3mes.users.v1.UsersService/GetUser").rate == Rate(100, 30.0)
    assert policies.for_method("/r3mes.users.v1.UsersService/CreateUser").name == "credentials"
    assert policies.internal is not None
    assert policies.internal.rate == Rate(1000, 1.0)
    assert policies.failed_authentication is not None
    assert policies.failed_authentication.rate == Rate(10, 60.0)
