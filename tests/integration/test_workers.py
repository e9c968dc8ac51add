"""Service processes as an operator starts them: several workers on one port, and a port that
is taken refused with a clear error (services.core.workers, services.core.lifecycle.run)."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.core.ports import free_port

START_SECONDS = 60


@contextmanager
def _users_process(
    data_dir: Path, port: int, workers: int, **settings: str
) -> Iterator[subprocess.Popen[str]]:
    env = {
        **os.environ,
        "R3MES_DATA_DIR": str(data_dir),
        "R3MES_USERS_PORT": str(port),
        "R3MES_WORKERS": str(workers),
        "R3MES_LOG_JSON": "true",
        **settings,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "services.users"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def _log_lines(process: subprocess.Popen[str], until: str, count: int) -> list[dict[str, object]]:
    """The JSON log lines up to the `count`-th whose message is `until` (or the process's end).

    A thread reads the pipe: a selector on a buffered text stream misses the lines that one
    read already pulled into the buffer (two workers logging at once), and would then wait
    for a line that had already arrived.
    """
    assert process.stderr is not None
    stream = process.stderr
    arrived: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in stream:
            arrived.put(line)
        arrived.put("")

    threading.Thread(target=read, daemon=True).start()
    lines: list[dict[str, object]] = []
    deadline = time.monotonic() + START_SECONDS
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = arrived.get(timeout=left)
        except queue.Empty:
            break
        if not line:
            break
        if line.startswith("{"):
            lines.append(json.loads(line))
        if sum(1 for entry in lines if entry["message"] == until) == count:
            break
    return lines


def test_two_workers_serve_one_port_and_stop_together_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    with _users_process(tmp_path, port, workers=2) as process:
        lines = _log_lines(process, until="serving calls", count=2)
        listening = [entry for entry in lines if entry["message"] == "listening"]

        assert [entry["message"] for entry in lines].count("serving calls") == 2
        assert [entry["port"] for entry in listening] == [port, port]
        assert len({entry["pid"] for entry in listening}) == 2
        assert process.pid not in {entry["pid"] for entry in listening}
        for _ in range(10):  # fresh connections, spread over the workers by the kernel
            with grpc.insecure_channel(
                f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
            ) as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service="r3mes.users.v1.UsersService"),
                    timeout=5,
                )
                assert reply.status == health_pb2.HealthCheckResponse.SERVING

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        for entry in listening:
            pid = entry["pid"]
            assert isinstance(pid, int)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            raise AssertionError(f"worker {pid} outlived its supervisor")


def test_each_worker_serves_its_metrics_on_the_metrics_port_plus_its_index(
    tmp_path: Path,
) -> None:
    port, metrics_port = free_port(), free_port()
    with _users_process(tmp_path, port, workers=2, R3MES_METRICS_PORT=str(metrics_port)) as process:
        lines = _log_lines(process, until="serving calls", count=2)
        served = [int(str(entry["port"])) for entry in lines if entry["message"] == "metrics"]
        pages = {p: httpx.get(f"http://127.0.0.1:{p}/metrics", timeout=5) for p in served}
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)

    assert sorted(pages) == [metrics_port, metrics_port + 1]
    for page in pages.values():
        assert page.status_code == 200
        assert "# TYPE r3mes_grpc_server_calls_in_flight gauge" in page.text


def test_a_service_started_on_a_taken_port_exits_with_an_error_naming_the_port(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        # As another grpc server would hold it: SO_REUSEPORT lets any process that also asks
        # for it share the port, which the service must not do silently.
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with _users_process(tmp_path, port, workers=1) as process:
            lines = _log_lines(process, until="failed to start", count=1)
            assert process.wait(timeout=30) == 1

    [failure] = [entry for entry in lines if entry["message"] == "failed to start"]
    assert f"cannot listen on 127.0.0.1:{port}: the port is in use" in str(failure["exception"])
