"""`make run`: the services, the front door and Envoy on this machine, their output interleaved as
`name | line`. Ctrl-C or SIGTERM stops them all. R3MES_TOPOLOGY chooses how the services run:
one-process (the default: one `python -m services` hosting them all on R3MES_USERS_PORT, with
R3MES_WORKERS processes on that port) or split (one process per service, each on its port).

Before anything starts, every port the suite needs is checked: one already taken is named with
the setting that moves it, and nothing claims to run. The banner is printed only once the
gateway's /healthz says every service serves. This module imports no gRPC: it forks its children
(runner/supervisor.py), which is unsafe once gRPC's threads exist.

Services migrate their SQLite files under R3MES_DATA_DIR (default data/) as they start.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from gateway.admin import ADMIN_HOST, admin_endpoint, describe
from gateway.paths import DESCRIPTOR_SET, ENVOY_CONFIG, GEN, ROOT
from gateway.settings import GatewaySettings
from runner.runlock import AlreadyRunning, RunLock
from runner.supervisor import Supervisor, die_with_parent
from services.core.registry import SERVICES, shared_port
from services.core.settings import Settings

if TYPE_CHECKING:  # imported for real only once the children run (gRPC)
    from runner.reference import ReferenceNode

DESCRIPTOR = DESCRIPTOR_SET
READY_TIMEOUT_SECONDS = 60.0
# Longer than the front door's own bound on a health check (CHECK_TIMEOUT_SECONDS, 1 s, in
# gateway/frontdoor/health.py, which imports gRPC): while services start, /healthz takes that
# long, and a poll that gave up sooner left the front door writing to a closed socket.
HEALTH_POLL_TIMEOUT_SECONDS = 3.0
ONE_PROCESS = "one-process"
HOST = "services"  # the name of the one process hosting every service
STOP_TIMEOUT_SECONDS = 10.0
# Unless the settings say otherwise: the port OpenTelemetry's Prometheus exporter uses, the
# processes after the first on the next ones (each worker of a process on one of its own).
DEFAULT_METRICS_PORT = 9464
DEFAULT_GATEWAY_METRICS_PORT = 9463
DEFAULT_FRONTDOOR_METRICS_PORT = 9462
# The processes whose metrics port has a setting of its own (one process each, no workers).
OWN_METRICS_SETTINGS = {
    "gateway": "R3MES_GATEWAY_METRICS_PORT",
    "frontdoor": "R3MES_FRONTDOOR_METRICS_PORT",
}
# The web console's, unless the settings name one (`make run` always serves it).
DEFAULT_CONSOLE_PORT = 8083
REFERENCE_NODE = "node"  # the reference serving node's name among the children
REFERENCE_NODE_HOST = "127.0.0.1"
REFERENCE_NETWORKS = ["127.0.0.0/8"]


def ensure_generated() -> None:
    """`make run` has generated the code already; `python -m runner.run` alone may not have."""
    if not (GEN / "r3mes").is_dir() or not DESCRIPTOR.is_file():
        subprocess.run([sys.executable, str(ROOT / "tools" / "protos.py")], cwd=ROOT, check=True)


def internal_token_file(settings: Settings) -> Path | None:
    """With no internal token configured, one per data folder, so internal RPCs can be tried
    with grpcurl (`-H "x-r3mes-internal-token: $(cat data/internal-token)"`)."""
    if settings.internal_token_value() is not None:
        return None
    return _secret_file(settings, "internal-token")


def gateway_secret_file(settings: Settings) -> Path | None:
    """With no gateway secret configured, one per data folder: the services then believe the
    client address Envoy forwards, and no other local process can forward one."""
    if settings.gateway_secret_value() is not None:
        return None
    return _secret_file(settings, "gateway-secret")


def _secret_file(settings: Settings, name: str) -> Path:
    path = (ROOT / settings.data_dir / name).resolve()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32) + "\n")
    return path


def development_environment(settings: Settings) -> dict[str, str]:
    """What `make run` sets for one developer unless the settings say otherwise: every client
    of this machine is the one address 127.0.0.1, so production's quotas (one caller each)
    would refuse a newcomer trying the signing flow; local ones apply instead (the banner says
    which)."""
    if settings.ratelimit_policies_file is not None:
        return {}
    from services.core.ratelimit.policies import LOCAL_POLICIES_FILE  # needs gen/ (protos)

    return {"R3MES_RATELIMIT_POLICIES_FILE": str(LOCAL_POLICIES_FILE)}


def console_port(settings: GatewaySettings) -> int:
    return settings.console_port or DEFAULT_CONSOLE_PORT


def process_environment(settings: GatewaySettings) -> dict[str, str]:
    environment = dict(os.environ)
    environment["PYTHONUNBUFFERED"] = "1"
    # The front door serves the console there, and Envoy's CORS allows its origin.
    environment["R3MES_CONSOLE_PORT"] = str(console_port(settings))
    # Plain text reads better than JSON lines in a terminal, unless asked otherwise.
    environment.setdefault("R3MES_LOG_JSON", "false")
    environment.update(development_environment(settings))
    token_file = internal_token_file(settings)
    if token_file is not None:
        environment["R3MES_INTERNAL_TOKEN_FILE"] = str(token_file)
    secret_file = gateway_secret_file(settings)
    if secret_file is not None:
        environment["R3MES_GATEWAY_SECRET_FILE"] = str(secret_file)
    # The reference node listens on loopback; node endpoints elsewhere stay public-only.
    environment.setdefault("R3MES_SERVING_PRIVATE_NETWORKS", json.dumps(REFERENCE_NETWORKS))
    return environment


def service_processes(settings: Settings) -> list[str]:
    if settings.topology == ONE_PROCESS:
        return [HOST]
    return [s.name for s in SERVICES]


def metrics_ports(settings: GatewaySettings) -> dict[str, int]:
    """Each service process's metrics port (its first worker's; worker i serves on it + i),
    Envoy's, as `gateway`, and the front door's. `make run` always serves metrics."""
    first = DEFAULT_METRICS_PORT if settings.metrics_port is None else settings.metrics_port
    ports = {
        name: first + index * settings.workers
        for index, name in enumerate(service_processes(settings))
    }
    ports["gateway"] = settings.gateway_metrics_port or DEFAULT_GATEWAY_METRICS_PORT
    ports["frontdoor"] = settings.frontdoor_metrics_port or DEFAULT_FRONTDOOR_METRICS_PORT
    return ports


def service_metrics_ports(settings: GatewaySettings) -> dict[str, int]:
    """The service processes' metrics ports alone (R3MES_METRICS_PORT, a port per worker)."""
    ports = metrics_ports(settings)
    return {name: port for name, port in ports.items() if name not in OWN_METRICS_SETTINGS}


def metrics_environments(settings: GatewaySettings) -> dict[str, dict[str, str]]:
    """What each child's environment gets on top of the common one: its metrics port."""
    ports = metrics_ports(settings)
    return {
        **{
            name: {"R3MES_METRICS_PORT": str(port)}
            for name, port in service_metrics_ports(settings).items()
        },
        "envoy": {OWN_METRICS_SETTINGS["gateway"]: str(ports["gateway"])},
        "frontdoor": {OWN_METRICS_SETTINGS["frontdoor"]: str(ports["frontdoor"])},
    }


def listening_ports(settings: GatewaySettings) -> list[tuple[str, str, int]]:
    """(setting, host, port) of every socket the suite listens on (port 0: any, not checked)."""
    host = settings.listen_host
    if settings.topology == ONE_PROCESS:
        ports = [(SERVICES[0].port_setting, host, shared_port(settings))]
    else:
        ports = [(s.port_setting, host, settings.port_of(s.name)) for s in SERVICES]
    ports += [
        ("R3MES_REFERENCE_NODE_PORT", REFERENCE_NODE_HOST, settings.reference_node_port),
        ("R3MES_FRONTDOOR_PORT", host, settings.frontdoor_port),
        ("R3MES_FRONTDOOR_GRPC_PORT", host, settings.frontdoor_grpc_port),
        ("R3MES_CONSOLE_PORT", host, console_port(settings)),
        ("R3MES_GATEWAY_PORT", host, settings.gateway_port),
    ]
    metrics = metrics_ports(settings)
    ports += [(setting, host, metrics[name]) for name, setting in OWN_METRICS_SETTINGS.items()]
    for first in service_metrics_ports(settings).values():
        ports += [("R3MES_METRICS_PORT", host, first + w) for w in range(settings.workers)]
    if settings.gateway_admin_port is not None:  # unset: admin is a unix socket in data_dir
        ports.append(("R3MES_GATEWAY_ADMIN_PORT", ADMIN_HOST, settings.gateway_admin_port))
    return [p for p in ports if p[2] != 0]


def port_in_use(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # Ignores connections in TIME_WAIT, never a listener (on Linux, even one that set
        # SO_REUSEPORT: this probe does not).
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def port_problems(settings: GatewaySettings) -> list[str]:
    """Why the suite could not listen where its settings say, one sentence each."""
    problems, seen = [], dict[int, str]()
    for setting, host, port in listening_ports(settings):
        if port in seen:
            problems.append(f"{setting} and {seen[port]} are both {port}: give each its own port")
        elif port_in_use(host, port):
            problems.append(
                f"port {port} ({setting}) is already in use on {host}, perhaps by another "
                f"`make run`: stop that, or set {setting} to a free port"
            )
        seen.setdefault(port, setting)
    return problems


def commands(settings: GatewaySettings) -> list[tuple[str, list[str]]]:
    if settings.topology == ONE_PROCESS:
        services = [(HOST, [sys.executable, "-m", "services"])]
    else:
        services = [(s.name, [sys.executable, "-m", f"services.{s.name}"]) for s in SERVICES]
    front_door = ("frontdoor", [sys.executable, "-m", "gateway.frontdoor"])
    envoy = ("envoy", [sys.executable, "-m", "gateway.serve", "--out", str(ENVOY_CONFIG)])
    node = [
        (
            REFERENCE_NODE,
            [
                sys.executable,
                "-m",
                "tools.reference_node",
                "--host",
                REFERENCE_NODE_HOST,
                "--port",
                str(settings.reference_node_port),
            ],
        )
    ]
    return [*services, front_door, envoy, *(node if settings.reference_node_port else [])]


def command_marker(name: str) -> str:
    """What each child's command line contains while it runs (gateway.serve becomes Envoy)."""
    markers = {
        "envoy": "envoy",
        "frontdoor": "gateway.frontdoor",
        HOST: "-m services",
        REFERENCE_NODE: "tools.reference_node",
    }
    return markers.get(name, f"services.{name}")


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - a comparison


def base_url(settings: GatewaySettings) -> str:
    return f"http://{_display_host(settings.listen_host)}:{settings.gateway_port}"


def ratelimit_lines(settings: Settings) -> str:
    """Which limits this run applies, and how to change them (docs/ratelimits.md)."""
    from services.core.ratelimit.policies import (
        DEFAULT_POLICIES_FILE,
        LOCAL_POLICIES_FILE,
        load_policies,
    )

    if settings.ratelimit_backend == "off":
        return "  Rate limits: none (R3MES_RATELIMIT_BACKEND=off)."
    chosen = settings.ratelimit_policies_file or LOCAL_POLICIES_FILE
    if chosen == LOCAL_POLICIES_FILE:
        which = f"local development, {chosen.relative_to(ROOT)}, not production's"
    else:
        which = f"R3MES_RATELIMIT_POLICIES_FILE={chosen}"
    policies = load_policies(chosen)
    failed = policies.failed_authentication
    scope = "per wallet and per address" + (
        f"; failed authentications ({failed.name}) per address" if failed else ""
    )
    return (
        f"  Rate limits ({which}):\n"
        f"    {policies},\n"
        f"    {scope};\n"
        "    every client on this machine is the one address ip:127.0.0.1.\n"
        f"    Production's: R3MES_RATELIMIT_POLICIES_FILE={DEFAULT_POLICIES_FILE.relative_to(ROOT)}"
        "; none at all: R3MES_RATELIMIT_BACKEND=off."
    )


def banner(settings: GatewaySettings) -> str:
    # Imported only now: services.core.testing loads gRPC, and every child is running already.
    from services.core.validators import new_wallet_address

    wallet = new_wallet_address()
    url = base_url(settings)
    host = _display_host(settings.listen_host)
    grpcurl = f".venv/bin/grpcurl -plaintext {host}:{settings.gateway_port}"
    if settings.topology == ONE_PROCESS:
        grpc_ports = f"{shared_port(settings)} (every service, one process)"
    else:
        grpc_ports = ", ".join(f"{s.name} {settings.port_of(s.name)}" for s in SERVICES)
    return f"""
R3MES is running: every service answers its health check.
  Start here:     {url}/   (API page {url}/docs, health {url}/healthz)
  Console:        http://{host}:{console_port(settings)}/   (sign in with Keplr or an API key)
  REST, gRPC-Web and gRPC: {url}   ({grpcurl} list)
  gRPC per service on {host}: {grpc_ports}
  Envoy admin: {describe(admin_endpoint(settings))}
  Prometheus metrics: {metrics_line(settings)}
{ratelimit_lines(settings)}
Try:
  curl -s -X POST {url}/v1/users -d '{{"wallet_address": "{wallet}"}}'
  curl -s {url}/v1/users/{wallet}
Ctrl-C stops everything.
"""


def metrics_line(settings: GatewaySettings) -> str:
    host = _display_host(settings.listen_host)
    shown = [
        f"{name} http://{host}:{port}/metrics" for name, port in metrics_ports(settings).items()
    ]
    workers = " (worker i of each on its port + i)" if settings.workers > 1 else ""
    return ", ".join(shown) + workers


def reference_node(settings: GatewaySettings) -> ReferenceNode | None:
    """The reference node to register for a fresh wallet of its own, on the internal token (the
    node's owner earns its share of each chat), and to keep fresh; None when there is none."""
    if not settings.reference_node_port:
        return None
    # Imported only now, as in banner(): gRPC's threads must not exist before the children.
    from runner.reference import ReferenceNode

    # The children's internal token: the configured one, or the data folder's.
    token_file = internal_token_file(settings)
    if token_file is not None:
        settings = settings.model_copy(update={"internal_token_file": token_file})
    url = f"http://{REFERENCE_NODE_HOST}:{settings.reference_node_port}/v1"
    return ReferenceNode(settings, url)


def _healthy(host: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(
            f"http://{host}:{port}/healthz", timeout=HEALTH_POLL_TIMEOUT_SECONDS
        ) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def suite_healthy(settings: GatewaySettings) -> bool:
    """The front door's /healthz asked directly until every service serves (so the waiting
    leaves no line in Envoy's access log), then once through the gateway."""
    host = _display_host(settings.listen_host)
    return _healthy(_display_host(settings.frontdoor_host), settings.frontdoor_port) and (
        _healthy(host, settings.gateway_port)
    )


class StopRequest:
    """Set by the SIGINT/SIGTERM handler: a plain attribute, never a lock. A handler that takes
    a lock (threading.Event.set does) deadlocks when a second signal arrives while the first
    handler holds it, as pressing Ctrl-C twice does."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, _signum: int, _frame: FrameType | None) -> None:
        self.requested = True


def _run(supervisor: Supervisor, settings: GatewaySettings, stopping: StopRequest) -> int:
    """Until a signal (exit 0) or a child's exit (its code, or 1)."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    ready = False
    node: ReferenceNode | None = None
    next_beat = float("inf")
    while not stopping.requested:
        time.sleep(0.2)
        exited = supervisor.exited()
        if exited is not None:
            code = exited.process.returncode
            supervisor.say(f"{exited.name} exited with code {code}: stopping everything")
            return code or 1
        if node is not None and time.monotonic() >= next_beat:
            problem = node.beat()
            if problem is not None:
                supervisor.say(problem)
            next_beat = time.monotonic() + node.beat_interval_seconds
        if not ready and suite_healthy(settings):
            ready = True
            node = reference_node(settings)
            if node is None:
                supervisor.say("No reference node (R3MES_REFERENCE_NODE_PORT=0).")
            else:
                supervisor.say(node.register())
                next_beat = time.monotonic() + node.beat_interval_seconds
            supervisor.say(banner(settings))
        elif not ready and time.monotonic() > deadline:
            supervisor.say(f"not healthy after {READY_TIMEOUT_SECONDS:g} s: see the lines above")
            return 1
    return 0


def main() -> None:
    settings = GatewaySettings()
    lock = RunLock((ROOT / settings.data_dir).resolve())
    try:
        lock.acquire()
    except AlreadyRunning as refusal:
        sys.exit(f"make run: {refusal}")
    problems = port_problems(settings)
    if problems:
        sys.exit("\n".join(f"make run: {problem}" for problem in problems))
    ensure_generated()
    stopping = StopRequest()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stopping)
    if sys.platform == "linux":
        # A make killed outright (SIGKILL) passes no signal on: this runner and all it started
        # would run on, holding the ports and the lock. This SIGTERM stops them as Ctrl-C does.
        die_with_parent(os.getppid())
    supervisor = Supervisor(ROOT, process_environment(settings))
    try:
        supervisor.start(commands(settings), metrics_environments(settings))
        lock.record({c.name: (c.process.pid, command_marker(c.name)) for c in supervisor.children})
        code = _run(supervisor, settings, stopping)
    finally:
        supervisor.stop(STOP_TIMEOUT_SECONDS)
        lock.release()
    sys.exit(code)


if __name__ == "__main__":
    main()
