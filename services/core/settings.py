"""Every setting of every service, read from `R3MES_*` environment variables (or a `.env` file).

One documented default per setting; the defaults are the embedded mode: SQLite files under
`data/`, the in-process rate limiter, every service on 127.0.0.1. docs/configuration.md lists them.
"""

from __future__ import annotations

import ipaddress
import re
import string
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core import validators

_GATEWAY_SECRET = re.compile(r"[A-Za-z0-9._~+/=-]{16,}")

# A service's name, as services.core.registry finds it (the kernel lists none).
ServiceName = str


class ServingPrice(BaseModel):
    """Micro-credits per token of one model or adapter."""

    prompt: int = Field(ge=0, le=10**9)
    completion: int = Field(ge=0, le=10**9)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="R3MES_", env_file=".env", extra="ignore")

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
        "of the first, in the order of the ports below): all, or names separated by commas "
        "(users,credits). Co-hosted services call each other in-process.",
    )
    topology: Literal["one-process", "split"] = Field(
        "one-process",
        description="How the services are spread: one-process (`make run` starts one process "
        "hosting all, on the users port, and every unset target points there) or split (one "
        "process per service, each on its own port, every unset target at that port).",
    )
    users_port: int = Field(50051, ge=0, le=65535, description="gRPC port of users (0: any).")
    apikeys_port: int = Field(50052, ge=0, le=65535, description="gRPC port of apikeys.")
    mining_port: int = Field(50053, ge=0, le=65535, description="gRPC port of mining.")
    credits_port: int = Field(50054, ge=0, le=65535, description="gRPC port of credits.")
    serving_port: int = Field(50055, ge=0, le=65535, description="gRPC port of serving.")
    users_target: str | None = Field(
        None, description="Where other services reach users. Unset: its port on this host."
    )
    apikeys_target: str | None = Field(
        None, description="Where others reach apikeys. Unset: its port on this host."
    )
    mining_target: str | None = Field(
        None, description="Where others reach mining. Unset: its port on this host."
    )
    credits_target: str | None = Field(
        None, description="Where others reach credits. Unset: its port on this host."
    )
    serving_target: str | None = Field(
        None, description="Where others reach serving. Unset: its port on this host."
    )
    call_timeout_seconds: float = Field(
        2.0, gt=0, description="Deadline of a service-to-service call."
    )

    # --- mining (services/mining): report retention and the optional chain indexer ---
    mining_report_retention_days: int = Field(
        180,
        ge=1,
        description="Raw mining reports older than this (by observe time) are pruned; the "
        "per-day rollups and per-miner totals every read uses are kept.",
    )
    mining_prune_interval_seconds: float = Field(
        3600.0, gt=0, description="How often mining prunes old raw reports."
    )
    chain_rpc_url: str | None = Field(
        None,
        pattern=r"^https?://",
        description="CometBFT RPC endpoint (http or https) whose blocks the mining service "
        "records. Unset: no indexer. An operator setting, trusted: loopback and private "
        "addresses are allowed.",
    )
    chain_poll_interval_seconds: float = Field(
        5.0, gt=0, description="Pause of the indexer between polls once caught up or failing."
    )
    chain_rpc_timeout_seconds: float = Field(
        5.0, gt=0, description="Deadline of each request of the indexer to the chain."
    )
    chain_blocks_per_poll: int = Field(
        100,
        ge=1,
        le=10000,
        description="Blocks the indexer records between two reads of the chain's height.",
    )
    chain_start_height: int = Field(
        1, ge=1, description="First block the indexer records when none is recorded yet."
    )
    chain_proposer_wallets: dict[str, str] = Field(
        {},
        description="Proposer address (hex, as in block headers) -> remes wallet credited with "
        "the block, as JSON. Blocks of other proposers are skipped (logged once per proposer).",
    )
    chain_block_reward_micro_credits: int = Field(
        0, ge=0, le=10**15, description="Reward recorded with each indexed block."
    )

    @field_validator("chain_proposer_wallets")
    @classmethod
    def _proposer_wallets(cls, mapping: dict[str, str]) -> dict[str, str]:
        # Headers spell proposers in uppercase hex; wallets are checked like any request's.
        checked = {}
        for proposer, wallet in mapping.items():
            if not proposer or any(c not in string.hexdigits for c in proposer):
                raise ValueError(f"proposer {proposer!r} is not a hex address")
            checked[proposer.upper()] = validators.wallet_address(wallet)
        return checked

    # --- serving (services/serving): paid inference on the network's nodes ---
    serving_prices: dict[str, ServingPrice] = Field(
        {},
        description="Price per token of each model or LoRA adapter, in micro-credits, as JSON: "
        '{"llama-3.1-8b": {"prompt": 1, "completion": 3}}. An adapter is priced by its own '
        "name, a model or adapter not listed at the defaults below.",
    )
    serving_default_prompt_price_micro_credits: int = Field(
        1, ge=0, le=10**9, description="Price per prompt token of models not in serving_prices."
    )
    serving_default_completion_price_micro_credits: int = Field(
        2,
        ge=0,
        le=10**9,
        description="Price per completion token of models not in serving_prices.",
    )
    serving_node_share_percent: int = Field(
        70,
        ge=0,
        le=100,
        description="Share of each confirmed charge credited to the node's owner (rounded down).",
    )
    serving_node_offline_after_seconds: float = Field(
        60.0,
        gt=0,
        description="A node not heard from (registration or heartbeat) for this long is offline: "
        "no traffic until it beats again.",
    )
    serving_node_failure_cooldown_seconds: float = Field(
        30.0,
        ge=0,
        description="A node that failed a chat before its first token gets no traffic from this "
        "process for this long.",
    )
    serving_node_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="Longest wait for a node: to connect, for its first token, between tokens.",
    )
    serving_endpoint_ports: list[int] = Field(
        [80, 443, 8000, 8080, 11434],
        description="Ports a node endpoint on a public address may use (vLLM 8000, llama.cpp "
        "8080, Ollama 11434).",
    )
    serving_private_networks: list[str] = Field(
        [],
        description="Networks (CIDRs) a node endpoint may name by IP address although they are "
        "not public, on any port: an operator setting (`make run` and the tests allow "
        "127.0.0.0/8). A host name must always resolve to public addresses only.",
    )

    @field_validator("serving_private_networks")
    @classmethod
    def _private_networks(cls, cidrs: list[str]) -> list[str]:
        for cidr in cidrs:
            ipaddress.ip_network(cidr, strict=False)
        return cidrs

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

    # API keys (the apikeys service and every service's API-key authentication).
    apikeys_max_active_per_wallet: int = Field(
        10, ge=1, le=1000, description="Most active (not revoked, not expired) keys per wallet."
    )
    apikeys_challenge_ttl_seconds: float = Field(
        300.0,
        ge=30,
        le=3600,
        description="How long an ownership challenge may be answered after it is issued.",
    )
    apikeys_cache_ttl_seconds: float = Field(
        5.0,
        gt=0,
        le=60,
        description="How long a service trusts a ValidateAPIKey answer: the longest a revoked or "
        "deleted key keeps working anywhere (with redis_url, revocations arrive at once).",
    )
    apikeys_refused_cache_ttl_seconds: float = Field(
        3.0,
        gt=0,
        le=60,
        description="How long a service remembers that a key is unknown, revoked or expired, "
        "so the same wrong key is not asked about on every call (a new key works at once: its "
        "secret was never refused).",
    )
    apikeys_cache_max_entries: int = Field(
        10000, ge=1, description="Most ValidateAPIKey answers a service keeps (least recent go)."
    )
    apikeys_last_used_flush_seconds: float = Field(
        10.0,
        gt=0,
        description="How often the apikeys service writes the keys' last use times, batched.",
    )
    apikeys_invalidation_channel: str = Field(
        "r3mes.apikeys.withdrawn",
        min_length=1,
        description="Redis pub/sub channel on which revoked and deleted keys are announced.",
    )
    redis_url: str | None = Field(
        None,
        description="Redis (redis://host:port/db) shared by the services. Unset: revocations "
        "reach other processes only by the expiry of their cached answers, and rate-limit "
        "buckets are per process (docs/ratelimits.md).",
    )

    grace_period_seconds: float = Field(
        5.0, ge=0, description="How long in-flight calls may finish after SIGTERM."
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

    gateway_port: int = Field(8080, ge=1, le=65535, description="Envoy's HTTP/JSON listener.")
    gateway_admin_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Envoy admin on 127.0.0.1 at this port, when asked for. Unset: admin listens "
        "only on the unix socket envoy-admin.sock in data_dir (mode 0600), which no web page can "
        "reach.",
    )
    cors_origins: list[str] = Field(
        ["http://localhost:3000", "http://127.0.0.1:3000"],
        description="Browser origins the gateway allows (CORS).",
    )
    gateway_trusted_hops: int = Field(
        0,
        ge=0,
        le=10,
        description="Proxies in front of Envoy whose x-forwarded-for entries Envoy believes "
        "(Envoy's xff_num_trusted_hops). 0: Envoy is the edge and the TCP peer is the client.",
    )
    gateway_route_timeout_seconds: float = Field(
        15.0,
        gt=0,
        description="Longest a call may take through the gateway (client gRPC deadlines are "
        "honoured up to this).",
    )
    max_request_bytes: int = Field(
        65536, ge=1024, description="Largest request body the gateway accepts (413 beyond)."
    )
    frontdoor_port: int = Field(
        8081,
        ge=1,
        le=65535,
        description="The front door's HTTP port (/, /docs, /openapi.json, /healthz), which the "
        "gateway routes those paths to.",
    )
    frontdoor_grpc_port: int = Field(
        8082,
        ge=1,
        le=65535,
        description="The front door's gRPC port: reflection of every service at once, which the "
        "gateway routes grpcurl's reflection calls to.",
    )
    reference_node_port: int = Field(
        8090,
        ge=0,
        le=65535,
        description="Port of the reference serving node (`python -m tools.reference_node`) that "
        "`make run` starts on 127.0.0.1 and registers, so a newcomer can chat at once. 0: none.",
    )
    frontdoor_host: str = Field(
        "127.0.0.1", description="Where the gateway reaches the front door (both ports)."
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

    def port_of(self, service: str) -> int:
        port: int = getattr(self, f"{service}_port")
        return port

    def target_of(self, service: str) -> str:
        """Where the service is reached: its target when set, else its port on this host, so
        moving a port moves every client of it (Envoy, /healthz, the peers) along."""
        target: str | None = getattr(self, f"{service}_target")
        if target is not None:
            return target
        return f"{self.connect_host()}:{self.port_of(service)}"

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
