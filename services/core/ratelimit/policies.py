"""The rate-limit policies of every RPC, read from a YAML file and checked when a service starts.

The defaults ship next to this module (`policies.yaml`); `ratelimit_policies_file` points at
another file. A method the protos do not declare, a policy nobody defines or a malformed rate
stops the service with a PolicyFileError that names the file and the entry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import descriptor_pool

# Imported for their descriptors: method names are checked against every service's protos.
from r3mes.apikeys.v1 import apikeys_pb2  # noqa: F401
from r3mes.credits.v1 import credits_pb2  # noqa: F401
from r3mes.mining.v1 import mining_pb2  # noqa: F401
from r3mes.users.v1 import users_pb2  # noqa: F401

from services.core.ratelimit.gcra import Rate

DEFAULT_POLICIES_FILE = Path(__file__).with_name("policies.yaml")
# What `make run` uses unless told otherwise: the same methods under the same policies, with
# quotas for one developer whose every client is 127.0.0.1 (docs/ratelimits.md).
LOCAL_POLICIES_FILE = Path(__file__).with_name("policies.local.yaml")
EXEMPT = "exempt"
_PERIODS = {"second": 1.0, "minute": 60.0, "hour": 3600.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour|\d+(?:\.\d+)?s)\s*$")
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


class PolicyFileError(ValueError):
    """The policy file cannot be used; the service must not start with it."""


@dataclass(frozen=True)
class Policy:
    name: str
    rate: Rate

    @cached_property
    def header(self) -> str:
        """The RateLimit-Policy field (IETF draft httpapi-ratelimit-headers): quota, window."""
        return f'"{self.name}";q={self.rate.limit};w={_seconds(self.rate.period_seconds)}'

    def __str__(self) -> str:
        """As a policy file writes it: `credentials 5/minute`."""
        period = self.rate.period_seconds
        unit = next((u for u, s in _PERIODS.items() if s == period), f"{_seconds(period)}s")
        return f"{self.name} {self.rate.limit}/{unit}"


@dataclass(frozen=True)
class Policies:
    methods: Mapping[str, Policy]
    default: Policy
    internal: Policy | None  # None: internal callers are exempt
    # Charged to the client address for each failed authentication; None: not limited.
    failed_authentication: Policy | None = None
    _by_grpc_path: dict[str, Policy] = field(default_factory=dict, repr=False, compare=False)

    def __str__(self) -> str:
        """Every policy in use, by name: `credentials 5/minute, read 30/minute, ...`."""
        used = {p.name: p for p in (*self.methods.values(), self.default)}
        return ", ".join(str(used[name]) for name in sorted(used))

    def for_method(self, grpc_path: str) -> Policy:
        """The policy of `/package.Service/Method` (grpc's method name)."""
        policy = self._by_grpc_path.get(grpc_path)
        if policy is None:
            policy = self.methods.get(grpc_path.lstrip("/").replace("/", "."), self.default)
            self._by_grpc_path[grpc_path] = policy
        return policy


def parse_rate(text: object) -> Rate:
    match = _RATE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not a rate such as '20/minute' or '100/30s'")
    limit, unit = int(match[1]), match[2]
    period = _PERIODS.get(unit) or float(unit.removesuffix("s"))
    if limit < 1 or period <= 0:
        raise ValueError(f"{text!r}: a rate needs at least one call in a positive period")
    return Rate(limit, period)


def load_policies(path: Path | None = None) -> Policies:
    path = path or DEFAULT_POLICIES_FILE
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise PolicyFileError(f"rate-limit policies {path}: cannot be read: {error}") from None
    try:
        return _parse(document)
    except ValueError as error:
        raise PolicyFileError(f"rate-limit policies {path}: {error}") from None


def _parse(document: Any) -> Policies:
    if not isinstance(document, dict):
        raise ValueError("expected a mapping with policies, default, internal and methods")
    unknown_keys = set(document) - {
        "policies",
        "default",
        "internal",
        "failed_authentication",
        "methods",
    }
    if unknown_keys:
        raise ValueError(f"unknown entries: {', '.join(sorted(unknown_keys))}")
    policies: dict[str, Policy] = {}
    for name, rate in _mapping(document, "policies").items():
        if not isinstance(name, str) or not _NAME.match(name) or name == EXEMPT:
            raise ValueError(f"policies: {name!r} is not a usable policy name")
        try:
            policies[name] = Policy(name, parse_rate(rate))
        except ValueError as error:
            raise ValueError(f"policies: {name}: {error}") from None

    def policy(where: str, name: object) -> Policy:
        if name not in policies:
            raise ValueError(
                f"{where}: {name!r} is not one of the policies ({', '.join(policies)})"
            )
        return policies[str(name)]

    pool = descriptor_pool.Default()
    methods: dict[str, Policy] = {}
    for method, name in _mapping(document, "methods").items():
        try:
            pool.FindMethodByName(str(method))
        except KeyError:
            raise ValueError(
                f"methods: {method!r} is not a method the protos declare "
                "(the form is package.Service.Method)"
            ) from None
        methods[str(method)] = policy(f"methods: {method}", name)
    internal = document.get("internal", EXEMPT)
    failed = document.get("failed_authentication", EXEMPT)
    return Policies(
        methods=methods,
        default=policy("default", document.get("default")),
        internal=None if internal == EXEMPT else policy("internal", internal),
        failed_authentication=(
            None if failed == EXEMPT else policy("failed_authentication", failed)
        ),
    )


def _mapping(document: dict[str, Any], key: str) -> dict[Any, Any]:
    value = document.get(key)
    if not isinstance(value, dict) or not value:
        raise ValueError(f"{key}: expected a non-empty mapping")
    return value


def _seconds(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"
