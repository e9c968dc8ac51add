"""A real Prometheus (Debian's `prometheus`, installed by `make prometheus-tools`) scraping a
running stack every second, with the alert rules of deploy/prometheus loaded, and its HTTP API
to query it."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from gateway.paths import ROOT
from runner.local_stack import LOOPBACK
from services.core.ports import free_port
from services.core.tls import client_context

ALERT_RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
SCRAPE_INTERVAL = "1s"
READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0


@dataclass
class Prometheus:
    url: str

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector `promql` gives now (each sample: `metric` labels, `value`)."""
        reply = httpx.get(
            f"{self.url}/api/v1/query", params={"query": promql}, timeout=5, verify=client_context()
        )
        reply.raise_for_status()
        result: list[dict[str, Any]] = reply.json()["data"]["result"]
        return result

    def value(self, promql: str) -> float | None:
        """The single value of `promql` now (None: no sample)."""
        samples = self.query(promql)
        if not samples:
            return None
        assert len(samples) == 1, samples
        return float(samples[0]["value"][1])

    def value_once(
        self, promql: str, expected: float, timeout_seconds: float = 30.0
    ) -> float | None:
        """`promql`'s value once it equals `expected` (the scrapes after the traffic have
        landed), or the last one seen when `timeout_seconds` pass first."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            seen = self.value(promql)
            if seen == expected or time.monotonic() > deadline:
                return seen
            time.sleep(0.25)

    def values_once(self, expected: Mapping[str, float]) -> dict[str, float | None]:
        """Each query's value once it equals what `expected` says (or the last one seen)."""
        return {query: self.value_once(query, count) for query, count in expected.items()}

    def samples_once(self, promql: str, timeout_seconds: float = 60.0) -> list[dict[str, Any]]:
        """`promql`'s samples once there are any, or none when `timeout_seconds` pass first."""
        deadline = time.monotonic() + timeout_seconds
        while not (samples := self.query(promql)) and time.monotonic() < deadline:
            time.sleep(0.25)
        return samples


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        raise FileNotFoundError("no prometheus binary: `make prometheus-tools` installs it")
    return found


def configuration(targets: Mapping[str, str], rules: Path = ALERT_RULES) -> dict[str, Any]:
    """One scrape job per process, named after it (`services`, `users`, ..., `gateway`)."""
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {"job_name": name, "static_configs": [{"targets": [target]}]}
            for name, target in targets.items()
        ],
    }


@contextmanager
def running_prometheus(
    work_dir: Path, targets: Mapping[str, str], rules: Path = ALERT_RULES
) -> Iterator[Prometheus]:
    """Prometheus scraping `targets` (process name: host:port) until the block ends, with the
    alert rules of `rules` (deploy/'s by default)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    config = work_dir / "prometheus.yml"
    config.write_text(yaml.safe_dump(configuration(targets, rules)))
    address = f"{LOOPBACK}:{free_port()}"
    log = work_dir / "prometheus.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                prometheus_binary(),
                f"--config.file={config}",
                f"--storage.tsdb.path={work_dir / 'tsdb'}",
                f"--web.listen-address={address}",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        prometheus = Prometheus(f"http://{address}")
        _wait_ready(prometheus, process, log)
        yield prometheus
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(prometheus: Prometheus, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited with {process.returncode}:\n{log.read_text()}")
        try:
            if (
                httpx.get(
                    f"{prometheus.url}/-/ready", timeout=1, verify=client_context()
                ).status_code
                == 200
            ):
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"prometheus not ready in time:\n{log.read_text()}")
        time.sleep(0.2)
