"""The gateway side's settings: what Envoy's config, the front door, the console and `make run`
read, and no service process does. The same `R3MES_*` environment variables (or `.env` lines);
docs/configuration.md lists them in a section of their own.

They extend the kernel's (services.core.settings.Settings) rather than sit beside them: every
part of the gateway side also reads the kernel's (where services listen and are reached, the
gateway secret, logging, tracing), so one object carries both there, while a service process
builds the kernel's alone and never sees these.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from services.core.settings import ServiceName, Settings


class Canary(BaseModel):
    """A second version of one service that the gateway sends a share of its calls to."""

    target: str = Field(pattern=r"^\S+:\d+$", description="host:port of the second version")
    weight: int = Field(ge=0, le=100, description="Percent of the service's gateway calls")


class GatewaySettings(Settings):
    """The kernel's settings and the gateway side's own: Envoy's listeners and limits, the
    front door's ports, the console, the reference node of `make run`, canary releases."""

    gateway_port: int = Field(8080, ge=1, le=65535, description="Envoy's HTTP/JSON listener.")
    gateway_admin_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Envoy admin on 127.0.0.1 at this port, when asked for. Unset: admin listens "
        "only on the unix socket envoy-admin.sock in data_dir (mode 0600), which no web page can "
        "reach.",
    )
    gateway_metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="A listener of Envoy on listen_host at this port answering GET /metrics "
        "with Envoy's own statistics (admin's /stats/prometheus, and nothing else of admin). "
        "Unset: none. `make run` opens one (its banner says where).",
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
    frontdoor_metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Port of the front door's Prometheus metrics (/metrics, on listen_host): its "
        "requests by route and status, their latency, those in flight, and the tokens and "
        "micro-credits of the chats through its OpenAI-compatible door. Unset: none served. "
        "`make run` opens one (its banner says where).",
    )
    frontdoor_host: str = Field(
        "127.0.0.1", description="Where the gateway reaches the front door (both ports)."
    )
    console_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="The web console's port on listen_host (docs/console.md), served by the "
        "front door from web/dist; the gateway's CORS then allows the console's origin. Unset: "
        "no console. `make run` serves it on 8083.",
    )
    console_gateway_url: str | None = Field(
        None,
        description="The gateway's URL as the console's browsers reach it, told them in its "
        "/config.json. Unset: http://<listen_host>:<gateway_port>.",
    )
    console_keplr_chain_id: str = Field(
        "remes-1",
        min_length=1,
        description="The chain the console asks Keplr for to sign in (Keplr must know it); the "
        "signed ADR-036 proof itself names no chain.",
    )
    canaries: dict[ServiceName, Canary] = Field(
        {},
        description='Canary releases, JSON: {"credits": {"target": "10.0.0.7:50054", "weight": '
        "5}} sends 5 % of credits' calls through the gateway to a second version at that "
        "target, the rest to its usual target. The weight is where Envoy starts; Envoy's "
        "runtime key `r3mes.canary.<service>` changes it while running (`python -m "
        "gateway.canary`), without dropping a call. Calls between services do not pass the "
        "gateway and are not split.",
    )

    def console_origins(self) -> list[str]:
        """The browser origins of the console (none without one): its host as a client on this
        machine names it, and `localhost` too when that is loopback."""
        if self.console_port is None:
            return []
        hosts = [self.connect_host()]
        if hosts[0] == "127.0.0.1":
            hosts.append("localhost")
        return [f"http://{host}:{self.console_port}" for host in hosts]

    def console_gateway(self) -> str:
        """The gateway's URL as the console calls it."""
        return self.console_gateway_url or f"http://{self.connect_host()}:{self.gateway_port}"
