"""The rate-limit policies of every RPC, checked when a service starts.

Which policy an RPC's calls are charged to is declared in its proto, beside its access rule
(`option (r3mes.common.v1.access) = {..., rate_limit: "read"}`), so a new service brings its
own and the kernel lists no method. What each policy allows is read from a YAML file: the
defaults ship next to this module (`policies.yaml`); `ratelimit_policies_file` points at another
file, which may also move single methods to another policy (`methods:`). A method the protos do
not declare, a policy nobody defines (in the file or named by a proto) or a malformed rate stops
the service with a PolicyFileError that names the file and the entry.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import descriptor_pool
from r3mes.common.v1 import options_pb2

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
    methods: Mapping[str, Policy]  # the file's per-method choices, over the protos'
    default: Policy
    internal: Policy | None  # None: internal callers are exempt
    # Charged to the client address for each failed authentication; None: not limited.
    failed_authentication: Policy | None = None
    named: Mapping[str, Policy] = field(default_factory=dict)  # every policy the file defines
    source: Path | None = None  # the file, named by the errors of `check`
    _by_grpc_path: dict[str, Policy] = field(default_factory=dict, repr=False, compare=False)

    def __str__(self) -> str:
        """Every policy the file defines, by name: `credentials 5/minute, read 30/minute, ...`."""
        return ", ".join(str(self.named[name]) for name in sorted(self.named))

    def for_method(self, grpc_path: str) -> Policy:
        """The policy of `/package.Service/Method` (grpc's method name)."""
        policy = self._by_grpc_path.get(grpc_path)
        if policy is None:
            policy = self._resolve(grpc_path.lstrip("/").replace("/", "."))
            self._by_grpc_path[grpc_path] = policy
        return policy

    def check(self, service_names: Iterable[str]) -> None:
        """Every method of these services (full proto names, the ones a process hosts) has a
        policy the file defines, and every method the file names of them exists. Entries for
        services hosted elsewhere are checked by the processes that host them."""
        pool = descriptor_pool.Default()
        hosted = set(service_names)
        for service_name in hosted:
            try:
                service = pool.FindServiceByName(service_name)
            except KeyError:
                continue  # a service without descriptors declares nothing: the default
            declared = {m.full_name for m in service.methods}
            for full_name in declared:
                self._resolve(full_name)
            for named in self.methods:
                if named.rpartition(".")[0] == service_name and named not in declared:
                    raise PolicyFileError(
                        f"rate-limit policies {self.source}: methods: {named!r} is not a "
                        "method the protos declare (the form is package.Service.Method)"
                    )

    def _resolve(self, full_name: str) -> Policy:
        chosen = self.methods.get(full_name)
        if chosen is not None:
            return chosen
        try:
            method = descriptor_pool.Default().FindMethodByName(full_name)
        except KeyError:
            return self.default  # no such method: grpc answers UNIMPLEMENTED anyway
        declared = method.GetOptions().Extensions[options_pb2.access].rate_limit
        if not declared:
            return self.default
        if declared not in self.named:
            raise PolicyFileError(
                f"rate-limit policies {self.source}: {full_name} declares the policy "
                f"{declared!r}, which the file does not define ({', '.join(self.named)})"
            )
        return self.named[declared]


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
        return dataclasses.replace(_parse(document), source=path)
    except ValueError as error:
        raise PolicyFileError(f"rate-limit policies {path}: {error}") from None


def _parse(document: Any) -> Policies:
    if not isinstance(document, dict):
        raise ValueError(
            "expected a mapping with policies, default and internal (methods: optional)"
        )
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

    methods: dict[str, Policy] = {}
    for method, name in (document.get("methods") or {}).items():
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
        named=policies,
    )


def _mapping(document: dict[str, Any], key: str) -> dict[Any, Any]:
    value = document.get(key)
    if not isinstance(value, dict) or not value:
        raise ValueError(f"{key}: expected a non-empty mapping")
    return value


def _seconds(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"
