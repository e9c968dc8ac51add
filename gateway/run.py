"""`make run`: the four services and Envoy on this machine, each its own process, their output
interleaved with a prefix per process (honcho). Ctrl-C or SIGTERM stops them all.

Services migrate their SQLite files under R3MES_DATA_DIR (default data/) as they start.
"""

from __future__ import annotations

import os
import secrets
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TextIO

from honcho.manager import Manager
from honcho.printer import Message, Printer

from gateway.admin import admin_endpoint, describe, envoy_ready
from gateway.local_stack import grpc_serving
from gateway.render import DEFAULT_DESCRIPTOR, ROOT
from services.core.settings import SERVICE_NAMES, Settings
from services.core.testing import new_wallet_address

ENVOY_CONFIG = ROOT / "build" / "envoy.yaml"
READY_TIMEOUT_SECONDS = 60.0


def ensure_generated() -> None:
    """`make run` has generated the code already; `python -m gateway.run` alone may not have."""
    if not (ROOT / "gen" / "r3mes").is_dir() or not DEFAULT_DESCRIPTOR.is_file():
        subprocess.run([sys.executable, str(ROOT / "tools" / "protos.py")], cwd=ROOT, check=True)


def internal_token_file(settings: Settings) -> Path | None:
    """With no internal token configured, one per data folder, so internal RPCs can be tried
    with grpcurl (`-H "x-r3mes-internal-token: $(cat data/internal-token)"`)."""
    if settings.internal_token_value() is not None:
        return None
    path = (ROOT / settings.data_dir / "internal-token").resolve()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32) + "\n")
    return path


def process_environment(settings: Settings) -> dict[str, str]:
    environment = dict(os.environ)
    environment["PYTHONUNBUFFERED"] = "1"
    # Plain text reads better than JSON lines in a terminal, unless asked otherwise.
    environment.setdefault("R3MES_LOG_JSON", "false")
    token_file = internal_token_file(settings)
    if token_file is not None:
        environment["R3MES_INTERNAL_TOKEN_FILE"] = str(token_file)
    return environment


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - a comparison


def banner(settings: Settings) -> str:
    host = _display_host(settings.listen_host)
    base_url = f"http://{host}:{settings.gateway_port}"
    wallet = new_wallet_address()
    grpc_ports = ", ".join(f"{name} {host}:{settings.port_of(name)}" for name in SERVICE_NAMES)
    return f"""
R3MES is running.
  REST (HTTP/JSON), gRPC-Web, gRPC: {base_url}
  gRPC directly:                    {grpc_ports}
  Envoy admin:                      {describe(admin_endpoint(settings))}
  API description:                  gateway/openapi.json, docs/api.md
Try:
  curl -s -X POST {base_url}/v1/users -H 'content-type: application/json' \\
       -d '{{"wallet_address": "{wallet}"}}'
  curl -s {base_url}/v1/users/{wallet}
Ctrl-C stops everything.
"""


def _wait_for(probes: list[Callable[[], bool]], timeout_seconds: float) -> bool:
    deadline = time.monotonic() + timeout_seconds
    for probe in probes:
        while not probe():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
    return True


def announce_when_ready(manager: Manager, settings: Settings) -> threading.Thread:
    """Print the banner once every service serves and Envoy is ready, in honcho's own stream."""
    host = _display_host(settings.listen_host)
    probes: list[Callable[[], bool]] = [
        *(partial(grpc_serving, f"{host}:{settings.port_of(name)}") for name in SERVICE_NAMES),
        partial(envoy_ready, admin_endpoint(settings)),
    ]

    def announce() -> None:
        ready = _wait_for(probes, READY_TIMEOUT_SECONDS)
        text = banner(settings) if ready else "not ready in time: see the logs above\n"
        manager.events.put(Message("line", text, datetime.now(), "system", None))

    thread = threading.Thread(target=announce, name="announce", daemon=True)
    thread.start()
    return thread


class _TerminalOutput:
    """Standard output that shrugs off a closed reader (`make run | head`): honcho prints from its
    signal handler, and an exception there would leave every process running."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        with suppress(BrokenPipeError, ValueError):
            return self._stream.write(text)
        return len(text)

    def flush(self) -> None:
        with suppress(BrokenPipeError, ValueError):
            self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()


def main() -> None:
    settings = Settings()
    ensure_generated()
    environment = process_environment(settings)
    manager = Manager(printer=Printer(_TerminalOutput(sys.stdout)))
    # `exec` replaces honcho's shell, so its SIGTERM reaches the process itself.
    for name in SERVICE_NAMES:
        command = shlex.join([sys.executable, "-m", f"services.{name}"])
        manager.add_process(name, f"exec {command}", env=environment, cwd=str(ROOT))
    envoy = shlex.join([sys.executable, "-m", "gateway.serve", "--out", str(ENVOY_CONFIG)])
    manager.add_process("envoy", f"exec {envoy}", env=environment, cwd=str(ROOT))
    announce_when_ready(manager, settings)
    try:
        manager.loop()
    finally:
        # loop() returns once every process has stopped; should it fail midway, this still
        # sends each one SIGTERM (a no-op once honcho has begun stopping them itself).
        manager.terminate()
    sys.exit(manager.returncode)


if __name__ == "__main__":
    main()
