"""What `make run` checks before it starts anything: free ports, and no earlier runner or its
leftovers on the same data folder."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.settings import GatewaySettings
from runner.run import banner, development_environment, port_problems, process_environment
from runner.runlock import AlreadyRunning, RunLock
from services.core.ratelimit.policies import LOCAL_POLICIES_FILE
from services.core.settings import Settings


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_in_one_process_only_the_shared_port_is_checked_and_named(taken_port: int) -> None:
    unused = GatewaySettings(topology="one-process", ports={"mining": taken_port})
    taken = GatewaySettings(topology="one-process", ports={"users": taken_port})

    assert [p for p in port_problems(unused) if str(taken_port) in p] == []
    assert [p for p in port_problems(taken) if str(taken_port) in p] == [
        f"port {taken_port} (R3MES_USERS_PORT) is already in use on 127.0.0.1, perhaps by "
        f"another `make run`: stop that, or set R3MES_USERS_PORT to a free port"
    ]


def test_a_port_in_use_is_named_with_the_setting_that_moves_it(taken_port: int) -> None:
    settings = GatewaySettings(topology="split", ports={"mining": taken_port})

    problems = [p for p in port_problems(settings) if str(taken_port) in p]

    assert problems == [
        f"port {taken_port} (R3MES_MINING_PORT) is already in use on 127.0.0.1, perhaps by "
        f"another `make run`: stop that, or set R3MES_MINING_PORT to a free port"
    ]


def test_two_settings_on_one_port_are_refused_before_anything_listens() -> None:
    settings = GatewaySettings(frontdoor_port=18123, ports={"users": 18123})

    assert (
        "R3MES_FRONTDOOR_PORT and R3MES_USERS_PORT are both 18123: give each its own port"
        in port_problems(settings)
    )


def test_the_runner_imports_no_grpc_before_it_starts_its_children() -> None:
    check = "import sys, runner.run; assert 'grpc' not in sys.modules, 'grpc loaded'"

    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)

    assert result.returncode == 0, result.stderr


def test_a_second_lock_on_the_same_data_folder_names_the_runner_holding_it(
    tmp_path: Path,
) -> None:
    first = RunLock(tmp_path)
    first.acquire()
    first.record({})

    with pytest.raises(AlreadyRunning, match=rf"another `make run` \(pid {os.getpid()}\)"):
        RunLock(tmp_path).acquire()
    first.release()


def _wait_until_it_runs(pid: int, command: str) -> None:
    """Until the child has exec'd: before that, its command line is still its parent's."""
    deadline = time.monotonic() + 10
    cmdline = Path(f"/proc/{pid}/cmdline")
    while command not in cmdline.read_bytes().decode(errors="replace"):
        assert time.monotonic() < deadline, f"pid {pid} never ran {command}"
        time.sleep(0.01)


def test_children_of_a_killed_runner_still_alive_are_named_with_their_pids(
    tmp_path: Path,
) -> None:
    leftover = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _wait_until_it_runs(leftover.pid, "time.sleep")
        killed = RunLock(tmp_path)
        killed.acquire()
        killed.record({"users": (leftover.pid, "time.sleep"), "envoy": (2**22 + 1, "envoy")})
        killed._file.close()  # type: ignore[union-attr]  # as a SIGKILL would: no release()

        with pytest.raises(AlreadyRunning) as refusal:
            RunLock(tmp_path).acquire()
    finally:
        leftover.kill()
        leftover.wait()

    assert str(refusal.value) == (
        f"processes of an earlier `make run` that was killed are still running: users (pid "
        f"{leftover.pid}). Stop them (`kill {leftover.pid}`), then try again"
    )


def test_make_run_applies_the_local_rate_limits_and_its_banner_says_which_and_how_to_change_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("R3MES_RATELIMIT_POLICIES_FILE", raising=False)
    settings = GatewaySettings(ratelimit_policies_file=None, ratelimit_backend=None)

    environment = process_environment(settings)
    shown = banner(settings)

    assert environment["R3MES_RATELIMIT_POLICIES_FILE"] == str(LOCAL_POLICIES_FILE)
    assert (
        "  Rate limits (local development, services/core/ratelimit/policies.local.yaml, "
        "not production's):\n"
        "    auth_failures 100/minute, chat 300/minute, credentials 60/minute, read 600/minute, "
        "write 300/minute,\n"
        "    per wallet and per address; failed authentications (auth_failures) per address;\n"
        "    every client on this machine is the one address ip:127.0.0.1.\n"
        "    Production's: R3MES_RATELIMIT_POLICIES_FILE=services/core/ratelimit/policies.yaml; "
        "none at all: R3MES_RATELIMIT_BACKEND=off.\n"
    ) in shown


def test_make_run_keeps_the_policies_a_developer_chose_and_names_them(tmp_path: Path) -> None:
    chosen = tmp_path / "mine.yaml"
    chosen.write_text(LOCAL_POLICIES_FILE.read_text().replace("60/minute", "2/minute"))
    settings = GatewaySettings(ratelimit_policies_file=chosen)

    assert development_environment(settings) == {}
    assert f"  Rate limits (R3MES_RATELIMIT_POLICIES_FILE={chosen}):\n" in banner(settings)
    assert "credentials 2/minute, read 600/minute" in banner(settings)


def test_make_run_with_rate_limiting_off_says_so() -> None:
    assert "  Rate limits: none (R3MES_RATELIMIT_BACKEND=off).\n" in banner(
        GatewaySettings(ratelimit_backend="off")
    )


def test_make_run_gives_the_suite_a_gateway_secret_of_its_own_kept_in_the_data_folder(
    tmp_path: Path,
) -> None:
    first = process_environment(GatewaySettings(_env_file=None, data_dir=tmp_path))
    second = process_environment(GatewaySettings(_env_file=None, data_dir=tmp_path))

    secret_file = Path(first["R3MES_GATEWAY_SECRET_FILE"])
    assert secret_file == tmp_path / "gateway-secret"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert second["R3MES_GATEWAY_SECRET_FILE"] == str(secret_file)
    secret = Settings(_env_file=None, gateway_secret_file=secret_file).gateway_secret_value()
    assert secret is not None
    assert len(secret) >= 32
