"""`make run` (runner/run.py) as a user meets it: one runner per data folder and per port, the
banner only once the gateway says every service serves, and nothing left behind when the runner
is killed outright."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.paths import ROOT
from runner.local_stack import LOOPBACK, StackPorts
from runner.run import REFERENCE_NODE
from services.core.registry import NAMES
from tests.e2e.make_run import (
    BANNER,
    Runner,
    alive,
    run_environment,
    running_make_run,
    start_runner,
    wait_for_banner,
)
from tools.reference_node import DEFAULT_MODEL


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    with running_make_run(tmp_path_factory.mktemp("make-run") / "data") as started:
        yield started


def test_the_banner_comes_once_the_gateway_reports_every_service_serving(runner: Runner) -> None:
    reply = httpx.get(f"http://{LOOPBACK}:{runner.ports.gateway}/healthz", timeout=5)

    assert reply.status_code == 200
    assert reply.json()["services"] == dict.fromkeys(NAMES, "SERVING")
    banner = "".join(runner.lines)
    assert f"http://{LOOPBACK}:{runner.ports.gateway}/docs" in banner
    assert "fork" not in banner  # gRPC's fork warnings: the runner never forks with gRPC loaded


def test_the_banner_lists_the_front_doors_metrics_which_count_its_pages(runner: Runner) -> None:
    front_door = f"http://{LOOPBACK}:{runner.ports.metrics['frontdoor']}/metrics"

    metrics = httpx.get(front_door, timeout=5)

    assert f"frontdoor {front_door}" in "".join(runner.lines)
    assert metrics.status_code == 200
    # The runner's own health poll asked /healthz before the banner.
    assert 'r3mes_frontdoor_requests_total{code="200",route="/healthz"}' in metrics.text


def test_the_banner_names_the_console_which_serves_its_page_and_the_gateway_allows_it(
    runner: Runner,
) -> None:
    console = f"http://{LOOPBACK}:{runner.ports.console}"
    gateway = f"http://{LOOPBACK}:{runner.ports.gateway}"

    page = httpx.get(f"{console}/", timeout=5)
    config = httpx.get(f"{console}/config.json", timeout=5)
    granted = httpx.get(f"{gateway}/v1/network/stats", headers={"origin": console}, timeout=5)

    assert f"Console:        {console}/" in "".join(runner.lines)
    assert page.status_code == 200
    assert "<title>R3MES console</title>" in page.text
    assert config.json()["gateway_url"] == gateway
    assert granted.headers["access-control-allow-origin"] == console


def test_make_run_registers_its_reference_node_which_the_gateway_then_lists(
    runner: Runner,
) -> None:
    endpoint = f"http://127.0.0.1:{runner.environment['R3MES_REFERENCE_NODE_PORT']}/v1"

    reply = httpx.get(f"http://{LOOPBACK}:{runner.ports.gateway}/v1/servingNodes", timeout=5)

    assert reply.status_code == 200
    [node] = reply.json()["nodes"]
    assert (node["endpoint_url"], node["models"]) == (endpoint, [DEFAULT_MODEL])
    assert (node["status"], node["fresh"]) == ("NODE_STATUS_ONLINE", True)
    assert f"Reference serving node: {endpoint} serves {DEFAULT_MODEL}" in "".join(runner.lines)


def test_a_second_run_on_the_same_data_folder_names_the_first_and_starts_nothing(
    runner: Runner,
) -> None:
    second = subprocess.run(
        [sys.executable, "-m", "runner.run"],
        cwd=ROOT,
        env=runner.environment,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert second.returncode == 1
    assert f"another `make run` (pid {runner.process.pid}) is running" in second.stderr
    assert BANNER not in second.stdout


def test_a_second_run_on_other_data_names_each_taken_port_and_its_setting(
    runner: Runner, tmp_path: Path
) -> None:
    environment = run_environment(runner.ports, tmp_path / "data")

    second = subprocess.run(
        [sys.executable, "-m", "runner.run"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert second.returncode == 1
    assert BANNER not in second.stdout
    named = {
        "R3MES_USERS_PORT": runner.ports.grpc["users"],  # the one port of every service
        "R3MES_FRONTDOOR_PORT": runner.ports.frontdoor,
        "R3MES_CONSOLE_PORT": runner.ports.console,
        "R3MES_GATEWAY_PORT": runner.ports.gateway,
    }
    for setting, port in named.items():
        assert f"port {port} ({setting}) is already in use" in second.stderr
    assert not (tmp_path / "data" / "users.db").exists()


def test_a_runner_killed_with_sigkill_takes_every_process_it_started_with_it(
    runner: Runner,
) -> None:
    recorded = json.loads((runner.data_dir / "run.lock").read_text())
    children = {name: pid for name, (pid, _) in recorded["children"].items()}
    # One process hosts every service; the reference serving node is a child of its own.
    assert set(children) == {"services", "frontdoor", "envoy", REFERENCE_NODE}
    assert all(alive(pid) for pid in children.values())

    os.kill(runner.process.pid, signal.SIGKILL)
    runner.process.wait(timeout=10)

    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in children.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [name for name, pid in children.items() if alive(pid)] == []


def test_ctrl_c_stops_every_process_and_the_runner_exits_0(tmp_path: Path) -> None:
    ports = StackPorts.pick(metrics=True)
    environment = run_environment(ports, tmp_path / "data")
    started = Runner(start_runner(environment), environment, ports, [])
    reader = wait_for_banner(started)
    recorded = json.loads((started.data_dir / "run.lock").read_text())
    children = [pid for pid, _ in recorded["children"].values()]

    started.process.send_signal(signal.SIGINT)

    assert started.process.wait(timeout=30) == 0
    reader.join(timeout=10)
    assert [pid for pid in children if alive(pid)] == []
    stopped = "".join(started.lines)
    assert f"stopped service={'+'.join(NAMES)}" in stopped


def test_make_killed_with_sigkill_leaves_its_runner_stopping_every_process_it_started(
    tmp_path: Path,
) -> None:
    """make passes SIGINT and SIGTERM on to its recipe, but a make killed outright (SIGKILL,
    the out-of-memory killer, an IDE's force stop) passes nothing: the runner follows make out
    by itself, stopping everything as Ctrl-C does."""
    ports = StackPorts.pick(metrics=True)
    environment = run_environment(ports, tmp_path / "data")
    make = Runner(start_runner(environment, through_make=True), environment, ports, [])
    wait_for_banner(make)
    recorded = json.loads((make.data_dir / "run.lock").read_text())
    processes = {"runner": recorded["runner"]} | {
        name: pid for name, (pid, _) in recorded["children"].items()
    }
    assert all(alive(pid) for pid in processes.values())

    make.process.kill()
    make.process.wait(timeout=10)

    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in processes.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [name for name, pid in processes.items() if alive(pid)] == []
    # Stopped as Ctrl-C stops it, not killed: the lock says no child runs any more.
    assert json.loads((make.data_dir / "run.lock").read_text())["children"] == {}
