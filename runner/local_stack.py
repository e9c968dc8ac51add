"""The whole suite on this machine, for the end-to-end tests and the benchmarks: the services, the
front door and Envoy, on free loopback ports, with a private data folder. The services run as
R3MES_TOPOLOGY says (`topology=` or the extra environment): one-process by default (one
`python -m services` hosting them all on one port), or split (one process per service, or with
`replicas=N` N processes per service, each on its own port: the service's target lists them all,
so Envoy and its peers balance over them).

`make run` (runner/run.py) prints their output live instead; this module keeps each process's
output in a file and stops exactly the processes it started.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal, cast

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.admin import AdminEndpoint, admin_socket, envoy_ready
from gateway.clusters import ADDRESS_LIST_SCHEME
from gateway.paths import ROOT
from services.core.ports import free_port, free_ports
from services.core.registry import NAMES, spec_of

LOOPBACK = "127.0.0.1"
STOP_TIMEOUT_SECONDS = 10.0
# Ports are chosen free, then bound by the processes a moment later: another test process
# choosing at the same moment can take one first (seen in CI). A stack whose process found its
# port taken starts again on other ports, this many times in all.
PORT_ATTEMPTS = 3
# What a process says when its port is taken: ours (services.core.lifecycle), Python's and
# Envoy's own errors.
PORT_IN_USE = re.compile(r"port is in use|address already in use", re.IGNORECASE)


class ExitedEarly(RuntimeError):
    """A process of the stack ended before the stack was ready."""


class PortTaken(ExitedEarly):
    """... because another process had taken its port."""


Topology = Literal["one-process", "split"]
ONE_PROCESS: Topology = "one-process"
HOST = "services"  # the name of the one process hosting every service
REFERENCE_NODE = "node"  # the reference serving node, when started


@dataclass(frozen=True)
class CanaryRelease:
    """A second version of one service, in a process of its own on a port of its own, to which
    the stack's gateway sends `weight` percent of the service's calls (R3MES_CANARIES).
    `command` starts it; by default the service as built (`python -m services.<service>`)."""

    service: str
    weight: int
    command: tuple[str, ...] = ()

    @property
    def process(self) -> str:
        return f"{self.service}-canary"

    def argv(self) -> list[str]:
        return list(self.command) or [sys.executable, "-m", f"services.{self.service}"]


@dataclass(frozen=True)
class StackPorts:
    grpc: Mapping[str, int]  # in one process, every service's is the same port
    gateway: int
    frontdoor: int
    frontdoor_grpc: int
    # Metrics ports (none: off): each service process's, by its name, Envoy's as `gateway`, and
    # the front door's as `frontdoor`.
    metrics: Mapping[str, int] = field(default_factory=dict)
    canary: int | None = None  # the gRPC port of a canary release, when there is one
    # Split with replicas: every replica's port of each service, by process name (the first
    # replica is named after its service, the others `<service>-2`, ...); else empty.
    replicas: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    console: int | None = None  # the web console's, served by the front door

    @classmethod
    def pick(
        cls,
        topology: Topology = ONE_PROCESS,
        *,
        metrics: bool = False,
        canary: CanaryRelease | None = None,
        replicas: int = 1,
    ) -> StackPorts:
        if replicas > 1 and topology == ONE_PROCESS:
            raise ValueError("replicas are processes of one service each: use topology split")
        # More than enough for every port below, all different.
        ports = iter(free_ports(2 * len(NAMES) * (replicas + 1) + 7))
        shared = next(ports)
        services = {n: shared if topology == ONE_PROCESS else next(ports) for n in NAMES}
        replica_ports = {
            n: {replica_name(n, i): port if i == 1 else next(ports) for i in range(1, replicas + 1)}
            for n, port in services.items()
            if replicas > 1
        }
        processes = [HOST] if topology == ONE_PROCESS else list(NAMES)
        processes += [p for named in replica_ports.values() for p in named if p not in processes]
        if canary is not None:
            processes.append(canary.process)
        edge = ["gateway", "frontdoor"]
        metrics_ports = {p: next(ports) for p in [*processes, *edge]} if metrics else {}
        canary_port = None if canary is None else next(ports)
        return cls(
            services,
            next(ports),
            next(ports),
            next(ports),
            metrics_ports,
            canary_port,
            replica_ports,
            next(ports),
        )

    def target_of(self, name: str) -> str:
        """Where the service is reached: its port, or gRPC's list of its replicas' ports."""
        ports = self.replicas.get(name)
        if not ports:
            return f"{LOOPBACK}:{self.grpc[name]}"
        return ADDRESS_LIST_SCHEME + ",".join(f"{LOOPBACK}:{port}" for port in ports.values())


def replica_name(service: str, number: int) -> str:
    """The process name of a service's `number`th replica (from 1)."""
    return service if number == 1 else f"{service}-{number}"


def stack_environment(
    ports: StackPorts,
    data_dir: Path,
    internal_token: str,
    extra: Mapping[str, str] | None = None,
    topology: Topology = ONE_PROCESS,
) -> dict[str, str]:
    """The environment of every process of the stack: R3MES_* from the caller's environment
    are dropped, so a developer's or CI's settings (a PostgreSQL URL, say) never leak in."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("R3MES_")}
    environment.update(
        {
            "R3MES_LISTEN_HOST": LOOPBACK,
            "R3MES_DATA_DIR": str(data_dir),
            "R3MES_INTERNAL_TOKEN": internal_token,
            # Envoy vouches for the client addresses it forwards with this; a test calling a
            # service directly does not hold it, as no outside process would.
            "R3MES_GATEWAY_SECRET": secrets.token_urlsafe(32),
            "R3MES_LOG_JSON": "false",
            "R3MES_GATEWAY_PORT": str(ports.gateway),
            "R3MES_FRONTDOOR_PORT": str(ports.frontdoor),
            "R3MES_FRONTDOOR_GRPC_PORT": str(ports.frontdoor_grpc),
            "R3MES_FRONTDOOR_HOST": LOOPBACK,
            **({"R3MES_CONSOLE_PORT": str(ports.console)} if ports.console else {}),
            "R3MES_TOPOLOGY": topology,
        }
    )
    if ports.metrics:
        # Envoy's and the front door's; each service process gets its own R3MES_METRICS_PORT
        # when it is started (this one is the first's: `make run` numbers the others from it).
        environment["R3MES_GATEWAY_METRICS_PORT"] = str(ports.metrics["gateway"])
        environment["R3MES_FRONTDOOR_METRICS_PORT"] = str(ports.metrics["frontdoor"])
        environment["R3MES_METRICS_PORT"] = str(next(iter(ports.metrics.values())))
    for name, port in ports.grpc.items():
        environment[f"R3MES_{name.upper()}_PORT"] = str(port)
        environment[f"R3MES_{name.upper()}_TARGET"] = ports.target_of(name)
    environment.update(extra or {})
    return environment


@dataclass
class _Started:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class LocalStack:
    """Start with `running_stack()`; `rest_url` and `grpc_target()` reach it."""

    ports: StackPorts
    work_dir: Path
    environment: dict[str, str]
    topology: Topology = ONE_PROCESS
    canary: CanaryRelease | None = None
    started: list[_Started] = field(default_factory=list)

    @property
    def rest_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.gateway}"

    @property
    def console_url(self) -> str:
        """The web console's address (its own origin; the front door serves it)."""
        assert self.ports.console is not None, "this stack serves no console"
        return f"http://{LOOPBACK}:{self.ports.console}"

    @property
    def gateway_target(self) -> str:
        return f"{LOOPBACK}:{self.ports.gateway}"

    def grpc_target(self, name: str) -> str:
        return f"{LOOPBACK}:{self.ports.grpc[name]}"

    @property
    def admin(self) -> AdminEndpoint:
        """Envoy's admin: its unix socket in the data folder, unless the environment asks for a
        port."""
        port = self.environment.get("R3MES_GATEWAY_ADMIN_PORT")
        if port:
            return int(port)
        return admin_socket(Path(self.environment["R3MES_DATA_DIR"]))

    def process_of(self, name: str) -> str:
        """The process that runs `name` (a service, or envoy, frontdoor)."""
        return HOST if self.topology == ONE_PROCESS and name in NAMES else name

    def pid_of(self, name: str) -> int:
        return next(s.process.pid for s in self.started if s.name == self.process_of(name))

    def log_of(self, name: str) -> str:
        """Everything the process (running service `name`) has written so far."""
        log = next(s.log for s in self.started if s.name == self.process_of(name))
        return log.read_text(errors="replace")

    @property
    def metrics_targets(self) -> dict[str, str]:
        """Where each process serves its metrics (name: host:port); empty when off."""
        return {name: f"{LOOPBACK}:{port}" for name, port in self.ports.metrics.items()}

    @property
    def canary_target(self) -> str:
        """Where the canary release listens (the stack must have one)."""
        assert self.ports.canary is not None, "this stack has no canary release"
        return f"{LOOPBACK}:{self.ports.canary}"

    def _spawn(
        self, name: str, command: list[str], overrides: Mapping[str, str] | None = None
    ) -> None:
        log = self.work_dir / f"{name}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**self._environment_of(name), **(overrides or {})},
                stdout=output,
                stderr=subprocess.STDOUT,
                # Its own process group: a Ctrl-C in the terminal reaches only pytest, which then
                # stops these in order.
                start_new_session=True,
            )
        self.started.append(_Started(name, process, log))

    def _environment_of(self, name: str) -> dict[str, str]:
        port = self.ports.metrics.get(name)
        if port is None or name in ("gateway", "frontdoor"):
            return self.environment
        return {**self.environment, "R3MES_METRICS_PORT": str(port)}

    def start_services(self) -> None:
        if self.topology == ONE_PROCESS:
            self._spawn(HOST, [sys.executable, "-m", "services", "--services", "all"])
            return
        for name in NAMES:
            command = [sys.executable, "-m", f"services.{name}"]
            for process, port in self.ports.replicas.get(name, {name: 0}).items():
                own_port = {spec_of(name).port_setting: str(port)} if port else {}
                self._spawn(process, command, own_port)

    def start_canary(self) -> None:
        """The canary release: the service's settings but its own port (and metrics port)."""
        if self.canary is None:
            return
        port = {spec_of(self.canary.service).port_setting: str(self.ports.canary)}
        self._spawn(self.canary.process, self.canary.argv(), port)

    def start_front_door(self) -> None:
        self._spawn("frontdoor", [sys.executable, "-m", "gateway.frontdoor"])

    def start_envoy(self, rendered: Path | None = None) -> None:
        # The same command as deploy/ and `make run`: render from the environment, then exec
        # Envoy (so the pid we hold is Envoy's). Or, as deploy/k8s does, on a rendered config.
        if rendered is not None:
            command = [sys.executable, "-m", "gateway.serve", "--config", str(rendered)]
        else:
            config = self.work_dir / "envoy.yaml"
            command = [sys.executable, "-m", "gateway.serve", "--out", str(config)]
        self._spawn("envoy", command)

    def start_reference_node(
        self, *arguments: str, name: str = REFERENCE_NODE, timeout_seconds: float = 30.0
    ) -> str:
        """Starts `python -m tools.reference_node` as process `name` on a free loopback port with
        `arguments` (`--delay 0.05`, say); its base URL once it listens."""
        port = free_port()
        command = [sys.executable, "-m", "tools.reference_node", "--port", str(port), *arguments]
        self._spawn(name, command)
        self._wait(partial(_listening, port), name, time.monotonic() + timeout_seconds)
        return f"http://{LOOPBACK}:{port}/v1"

    def wait_until_ready(self, timeout_seconds: float) -> None:
        deadline = time.monotonic() + timeout_seconds
        for name in NAMES:
            # Asked by its own name: a port another process took first answers for another.
            service = spec_of(name).proto_service
            replicas = self.ports.replicas.get(name, {name: self.ports.grpc[name]})
            for process, port in replicas.items():
                probe = partial(grpc_serving, f"{LOOPBACK}:{port}", service)
                self._wait(probe, process, deadline)
        canary = self.canary
        if canary is not None and any(s.name == canary.process for s in self.started):
            service = spec_of(canary.service).proto_service
            probe = partial(grpc_serving, self.canary_target, service)
            self._wait(probe, canary.process, deadline)
        if any(s.name == "frontdoor" for s in self.started):
            front_door = f"{LOOPBACK}:{self.ports.frontdoor_grpc}"
            self._wait(partial(grpc_serving, front_door), "frontdoor", deadline)
        if any(s.name == "envoy" for s in self.started):
            self._wait(partial(envoy_ready, self.admin), "envoy", deadline)

    def _wait(self, probe: Callable[[], bool], name: str, deadline: float) -> None:
        while not probe():
            self._fail_if_exited()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not ready in time\n{self.logs()}")
            time.sleep(0.1)

    def _fail_if_exited(self) -> None:
        for started in self.started:
            if started.process.poll() is not None:
                log = started.log.read_text(errors="replace")
                failure = PortTaken if PORT_IN_USE.search(log) else ExitedEarly
                raise failure(
                    f"{started.name} exited with {started.process.returncode}\n{self.logs()}"
                )

    def logs(self, last_lines: int = 30) -> str:
        parts = []
        for started in self.started:
            lines = started.log.read_text(errors="replace").splitlines()[-last_lines:]
            parts.append(f"--- {started.name} ---\n" + "\n".join(lines))
        return "\n".join(parts)

    def stop(self) -> None:
        """SIGTERM every process we started (Envoy first, so no call reaches a stopped service),
        wait, and SIGKILL only those still running after the timeout."""
        for started in reversed(self.started):
            if started.process.poll() is None:
                started.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for started in reversed(self.started):
            try:
                started.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                started.process.kill()
                started.process.wait()
        self.started.clear()


def _listening(port: int) -> bool:
    try:
        socket.create_connection((LOOPBACK, port), timeout=0.5).close()
    except OSError:
        return False
    return True


def grpc_serving(target: str, service: str = "") -> bool:
    """Whether `target` says `service` (its whole server, by default) is serving."""
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=0.5)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@contextmanager
def running_stack(
    work_dir: Path,
    *,
    internal_token: str,
    with_envoy: bool = True,
    extra_environment: Mapping[str, str] | None = None,
    ready_timeout_seconds: float = 60.0,
    topology: Topology | None = None,
    metrics: bool = False,
    canary: CanaryRelease | None = None,
    replicas: int = 1,
) -> Iterator[LocalStack]:
    """Start the services (and Envoy), wait until all are serving, stop them all on exit;
    `metrics` gives every service process, Envoy and the front door a metrics port
    (`metrics_targets`);
    `canary` starts a second version of one service, which the gateway sends its weight to;
    `replicas` (split only) starts that many processes of each service."""
    chosen = topology or cast(
        Topology, (extra_environment or {}).get("R3MES_TOPOLOGY", ONE_PROCESS)
    )
    data_dir = work_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, PORT_ATTEMPTS + 1):
        ports = StackPorts.pick(chosen, metrics=metrics, canary=canary, replicas=replicas)
        environment = stack_environment(ports, data_dir, internal_token, extra_environment, chosen)
        stack = LocalStack(ports, work_dir, environment, chosen, canary)
        try:
            _start(stack, with_envoy=with_envoy, ready_timeout_seconds=ready_timeout_seconds)
        except PortTaken:
            stack.stop()
            if attempt == PORT_ATTEMPTS:
                raise
            continue
        except BaseException:
            stack.stop()
            raise
        break
    try:
        yield stack
    finally:
        stack.stop()


def _start(stack: LocalStack, *, with_envoy: bool, ready_timeout_seconds: float) -> None:
    canary = stack.canary
    if canary is not None:
        release = {"target": stack.canary_target, "weight": canary.weight}
        stack.environment["R3MES_CANARIES"] = json.dumps({canary.service: release})
    stack.start_services()
    stack.wait_until_ready(ready_timeout_seconds)
    if canary is not None:
        # After the release it shadows has made (migrated) their data: two processes setting
        # up one SQLite file at once lock each other out.
        stack.start_canary()
        stack.wait_until_ready(ready_timeout_seconds)
    if with_envoy:
        stack.start_front_door()
        stack.start_envoy()
        stack.wait_until_ready(ready_timeout_seconds)
