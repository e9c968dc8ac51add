"""The kernel's settings, read from `R3MES_*` environment variables (or a `.env` file).

One documented default per setting; the defaults are the embedded mode: SQLite files under
`data/`, the in-process rate limiter, every service on 127.0.0.1. docs/configuration.md lists them.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from services.core.endpoints import (
    PORT_SUFFIX,
    TARGET_SUFFIX,
    Port,
    ServiceEndpoints,
    default_port,
    unknown_services,
)

# How long a draining server waits for arriving calls to dry up unless R3MES_DRAIN_QUIET_SECONDS
# says otherwise (services.core.interceptors.admission says why it waits at all).
DRAIN_QUIET_SECONDS = 0.25

_GATEWAY_SECRET = re.compile(r"[A-Za-z0-9._~+/=-]{16,}")

# A service's name, as services.core.registry finds it (the kernel lists none).
ServiceName = str


class SettingsBase(BaseSettings):
    """What every settings class shares: `R3MES_*` environment variables (or a `.env` file).
    The kernel's are `Settings`; a service's own live in `services/<name>/settings.py`."""

    model_config = SettingsConfigDict(env_prefix="R3MES_", env_file=".env", extra="ignore")


class Settings(SettingsBase):
    """The kernel's settings, what service processes read: storage, listening and reaching
    services, identity, limits, lifecycle. What only one service reads is that service's own;
    what only the gateway side reads (Envoy, the front door, the console) is the gateway's
    (gateway/settings.py)."""

    data_dir: Path = Field(Path("data"), description="Folder of the embedded SQLite files.")
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of a shared database (postgresql+asyncpg://...). Unset: one "
        "SQLite file per service under data_dir.",
    )
    schema_suffix: str = Field(
        "",
        pattern=r"^[a-z0-9_]*$",
        description="Appended to every schema name on PostgreSQL (users -> users<suffix>), so "
        "several environments or test runs can share one database.",
    )
    migrate_on_start: bool | None = Field(
        None,
        description="Run migrations when a service starts. Unset: yes on SQLite, no on a shared "
        "database (run `make migrate` there).",
    )
    db_pool_size: int = Field(10, ge=1, description="Connections per service on PostgreSQL.")
    db_probe_seconds: float = Field(
        1.0,
        gt=0,
        le=60,
        description="How often each service asks its database whether it answers; its health "
        "`<service>.database` is NOT_SERVING while it does not.",
    )
    db_connect_timeout_seconds: float = Field(
        3.0,
        gt=0,
        description="Longest wait for a PostgreSQL connection (new or from the pool); past it "
        "the call is UNAVAILABLE, and a starting service exits.",
    )
    db_statement_timeout_seconds: float = Field(
        5.0,
        gt=0,
        description="Longest a PostgreSQL statement may run (client and server side); past it "
        "the call is UNAVAILABLE.",
    )
    db_retry_attempts: int = Field(
        4,
        ge=1,
        le=20,
        description="Tries of a unit of work that meets a serialization failure, a deadlock or "
        "SQLite busy (with jittered backoff) before the call is ABORTED.",
    )
    idempotency_retention_days: int = Field(
        7,
        ge=7,
        description="How long idempotency keys are remembered (the protos promise at least 7 "
        "days); older ones are swept by each service.",
    )
    page_token_secret: SecretStr | None = Field(
        None,
        description="Key that signs page tokens, the same on every replica. Unset: derived from "
        "the internal token, or random per process when there is none (tokens then work only "
        "on the replica that issued them).",
    )

    listen_host: str = Field("127.0.0.1", description="Address the gRPC servers bind to.")
    services: str = Field(
        "all",
        pattern=r"^[a-z0-9_, ]+$",
        description="What `python -m services` hosts in its one process, on one gRPC port (that "
        "of the first, in the order of their declared ports): all, or names separated by commas "
        "(users,credits). Co-hosted services call each other in-process.",
    )
    topology: Literal["one-process", "split"] = Field(
        "one-process",
        description="How the services are spread: one-process (`make run` starts one process "
        "hosting all, on the users port, and every unset target points there) or split (one "
        "process per service, each on its own port, every unset target at that port).",
    )
    ports: dict[ServiceName, Port] = Field(
        {},
        description="gRPC port of each service (0: any), set as `R3MES_<SERVICE>_PORT`. Unset: "
        "the port its registration declares.",
        json_schema_extra={
            "per_service": PORT_SUFFIX,
            "each": "gRPC port of {service} (0: any).",
        },
    )
    targets: dict[ServiceName, str] = Field(
        {},
        description="Where other processes reach each service, set as `R3MES_<SERVICE>_TARGET` "
        "(host:port, or a list of replicas). Unset: under the topology, the port it listens on.",
        json_schema_extra={
            "per_service": TARGET_SUFFIX,
            "each": "Where other processes reach {service} (host:port, or a list of replicas). "
            "Unset: where it listens under the topology.",
        },
    )
    call_timeout_seconds: float = Field(
        2.0, gt=0, description="Deadline of a service-to-service call."
    )

    internal_token: SecretStr | None = Field(
        None,
        description="The internal service token (x-r3mes-internal-token). Unset and no file: no "
        "caller is internal, so internal RPCs refuse everyone.",
    )
    internal_token_file: Path | None = Field(
        None, description="A file holding the internal token (wins over internal_token)."
    )
    trusted_proxies: list[str] = Field(
        ["127.0.0.1/32", "::1/128"],
        description="Peers (CIDRs) whose x-forwarded-for is believed, when the call also carries "
        "the gateway secret: the gateway's addresses.",
    )
    gateway_secret: SecretStr | None = Field(
        None,
        description="A secret the gateway adds to every call it forwards "
        "(x-r3mes-gateway-secret); a service believes x-forwarded-for only from a trusted proxy "
        "that presents it. Unset and no file: no forwarded address is believed, so every call "
        "is charged to its TCP peer. `make run` and the e2e stack generate one.",
    )
    gateway_secret_file: Path | None = Field(
        None, description="A file holding the gateway secret (wins over gateway_secret)."
    )

    # Rate limiting (docs/ratelimits.md).
    ratelimit_backend: Literal["memory", "redis", "off"] | None = Field(
        None,
        description="Where rate-limit buckets live: memory (this process only), redis (every "
        "replica, exact), off. Unset: redis when redis_url is set, else memory.",
    )
    ratelimit_policies_file: Path | None = Field(
        None,
        description="YAML file of the rate-limit policies per method (docs/ratelimits.md). "
        "Unset: the defaults shipped with the services.",
    )
    ratelimit_redis_failure: Literal["open", "closed"] = Field(
        "open",
        description="What rate-limited calls get while Redis is unreachable: open admits them "
        "unchecked, closed refuses them (RESOURCE_EXHAUSTED, HTTP 429, with RetryInfo).",
    )
    ratelimit_redis_timeout_seconds: float = Field(
        0.25,
        gt=0,
        le=5,
        description="Longest wait of the probe for Redis's PING, timed apart from the service's "
        "event loop; past it Redis counts as unreachable and the failure policy applies.",
    )
    ratelimit_redis_decision_timeout_seconds: float = Field(
        2.0,
        gt=0,
        le=30,
        description="Longest wait of one call for its rate-limit decision, timed on the "
        "service's event loop (so a busy process counts too); a call past it is refused with "
        "RATE_LIMITER_UNAVAILABLE unless the probe finds Redis unreachable.",
    )
    ratelimit_redis_probe_seconds: float = Field(
        1.0,
        gt=0,
        le=60,
        description="How often the probe asks Redis whether it answers (and health refreshed).",
    )

    redis_url: str | None = Field(
        None,
        description="Redis (redis://host:port/db) shared by the services. Unset: revocations "
        "reach other processes only by the expiry of their cached answers, and rate-limit "
        "buckets are per process (docs/ratelimits.md).",
    )
    # Events of the transactional outbox (services.core.outbox, docs/architecture.md).
    outbox_relay_interval_seconds: float = Field(
        0.1,
        gt=0,
        le=60,
        description="How often a service that publishes events (credits, mining) looks for "
        "unsent ones in its outbox and relays them to Redis (without redis_url: drops them). "
        "Part of how soon users' read model sees a change.",
    )
    outbox_retention_seconds: float = Field(
        3600.0, gt=0, description="How long relayed events stay in the outbox before pruning."
    )
    events_stream_prefix: str = Field(
        "r3mes:events:",
        description="Prefix of the Redis streams of events, one per publishing service "
        "(<prefix>credits): environments sharing one Redis give each its own.",
    )
    events_stream_max_length: int = Field(
        100_000,
        ge=1000,
        description="About how many events each stream keeps (XADD MAXLEN ~); a reader that "
        "falls further behind rebuilds its read model.",
    )

    grace_period_seconds: float = Field(
        5.0, ge=0, description="How long in-flight calls may finish after SIGTERM."
    )
    drain_quiet_seconds: float = Field(
        DRAIN_QUIET_SECONDS,
        ge=0,
        le=10,
        description="After SIGTERM, how long no call may have arrived (each refused "
        "UNAVAILABLE, which clients retry elsewhere) before the server stops listening; within "
        "the grace period. Longer on a machine so busy that calls wait to reach the service.",
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Processes per service, sharing its port (SO_REUSEPORT, only when above 1; "
        "the port must then be fixed, not 0). One process uses one core.",
    )
    uvloop: bool = Field(True, description="Run services on uvloop's event loop (faster).")
    max_connection_age_seconds: float = Field(
        300.0,
        gt=0,
        description="A connection to a service is asked to close (HTTP/2 GOAWAY) after this "
        "long, and closed with whatever it still carries after the grace below: no call, even "
        "one whose message never arrives, lives longer than the sum.",
    )
    max_connection_age_grace_seconds: float = Field(
        30.0,
        gt=0,
        description="How long calls on a connection asked to close may still run; keep it "
        "above gateway_route_timeout_seconds.",
    )
    metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Port of this process's Prometheus metrics (/metrics, on listen_host); "
        "with workers above 1, worker i serves on this port + i. Unset: no metrics are "
        "recorded or served. `make run` sets one per process (its banner lists them).",
    )
    log_level: str = Field("INFO", description="Python logging level.")
    log_json: bool = Field(True, description="One JSON object per log line (else plain text).")
    otlp_endpoint: str | None = Field(
        None,
        pattern=r"^http://[^/?#@]+:[0-9]+/?$",
        description="OpenTelemetry collector (OTLP over gRPC, plaintext: http://host:4317) to "
        "which every service process and Envoy send their trace spans. Unset: no span is "
        "recorded or exported; the W3C traceparent Envoy starts is still passed on between "
        "services and logged as trace_id.",
    )
    trace_sample_percent: float = Field(
        100.0,
        ge=0,
        le=100,
        description="Share of traces recorded when a collector is set, decided where a trace "
        "starts (Envoy for calls through the gateway); a call that arrives with a traceparent "
        "keeps its decision.",
    )

    features: dict[str, bool] = Field(
        {},
        description='Feature flags, JSON: {"users.network_stats_cache": true}. Unset flags are '
        "off. services.core.features; docs/operations.md lists the flags.",
    )
    features_file: Path | None = Field(
        None,
        description="A JSON file of feature flags (the shape of `features`, whose flags it "
        "overrides), read again whenever it changes: a flag flips in running processes.",
    )

    @field_validator("otlp_endpoint", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        # `R3MES_OTLP_ENDPOINT=` (compose's `${OTLP_ENDPOINT:-}`, say) means no collector.
        return None if value == "" else value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, cidrs: list[str]) -> list[str]:
        for cidr in cidrs:
            ipaddress.ip_network(cidr, strict=False)  # raises ValueError, named by pydantic
        return cidrs

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        assert isinstance(env_settings, EnvSettingsSource)
        assert isinstance(dotenv_settings, EnvSettingsSource)
        endpoints = ServiceEndpoints(settings_cls, env_settings, dotenv_settings)
        return init_settings, endpoints, env_settings, dotenv_settings, file_secret_settings

    @field_validator("ports", "targets")
    @classmethod
    def _registered(cls, endpoints: dict[str, object]) -> dict[str, object]:
        if unknown := unknown_services(endpoints):
            raise ValueError(f"no service is named {', '.join(unknown)}")
        return endpoints

    def port_of(self, service: str) -> int:
        return self.ports.get(service, default_port(service))

    def target_set(self, service: str) -> bool:
        return service in self.targets

    def target_of(self, service: str) -> str:
        """Where the service is reached: its target when set, else its port on this host, so
        moving a port moves every client of it (Envoy, /healthz, the peers) along."""
        if service in self.targets:
            return self.targets[service]
        return f"{self.connect_host()}:{self.port_of(service)}"

    def with_ports(self, **ports: int) -> Self:
        """A copy listening where given (`settings.with_ports(users=0)`), the rest as set."""
        return self.model_copy(update={"ports": {**self.ports, **ports}})

    def with_targets(self, **targets: str) -> Self:
        """A copy reaching services where given, the rest as set."""
        return self.model_copy(update={"targets": {**self.targets, **targets}})

    def connect_host(self) -> str:
        """Where a client on this machine reaches what listens on `listen_host` (a wildcard
        address is reached on loopback)."""
        if self.listen_host in ("", "0.0.0.0"):  # noqa: S104 - a comparison, not a bind
            return "127.0.0.1"
        if ":" in self.listen_host:
            return "[::1]" if self.listen_host == "::" else f"[{self.listen_host}]"
        return self.listen_host

    def internal_token_value(self) -> str | None:
        """The internal token, read from the file when one is configured."""
        return _secret(self.internal_token, self.internal_token_file)

    def gateway_secret_value(self) -> str | None:
        """The gateway secret, read from the file when one is configured."""
        secret = _secret(self.gateway_secret, self.gateway_secret_file)
        # It travels as a header value and is written into Envoy's header formats, where `%`
        # is special: a plain alphabet keeps it the same on both sides.
        if secret is not None and not _GATEWAY_SECRET.fullmatch(secret):
            raise ValueError(
                "the gateway secret must be at least 16 characters of A-Z a-z 0-9 . _ ~ + / = - "
                "(openssl rand -hex 32 makes one)"
            )
        return secret


def _secret(value: SecretStr | None, file: Path | None) -> str | None:
    if file is not None:
        return file.read_text().strip() or None
    return value.get_secret_value() if value else None
