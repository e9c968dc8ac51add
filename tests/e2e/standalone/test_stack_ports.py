"""A test stack whose chosen port another process took first (another test process choosing at
the same moment, seen in CI) is not fooled by that process's answers and starts again on other
ports."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2_grpc

from runner import local_stack
from runner.local_stack import LOOPBACK, StackPorts, running_stack
from services.core.ports import free_port

TOKEN = "stack-ports-test-token"


@pytest.fixture
def foreign_server() -> Iterator[int]:
    """A gRPC server of another process's kind: its health says SERVING for the whole server,
    and it knows none of our services."""
    port = free_port()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    server.add_insecure_port(f"{LOOPBACK}:{port}")
    server.start()
    yield port
    server.stop(None).wait()


def test_a_stack_whose_port_was_taken_first_starts_again_on_other_ports(
    foreign_server: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    picks: list[StackPorts] = []
    chosen_freely = StackPorts.pick

    def first_the_taken_port(*arguments: object, **options: object) -> StackPorts:
        ports = chosen_freely(*arguments, **options)  # type: ignore[arg-type]
        if not picks:
            ports = replace(ports, grpc=dict.fromkeys(ports.grpc, foreign_server))
        picks.append(ports)
        return ports

    monkeypatch.setattr(local_stack.StackPorts, "pick", first_the_taken_port)

    with running_stack(tmp_path, internal_token=TOKEN, with_envoy=False) as stack:
        answering = {name: stack.grpc_target(name) for name in stack.ports.grpc}

    assert len(picks) == 2
    assert f"{LOOPBACK}:{foreign_server}" not in answering.values()
    assert set(answering.values()) == {f"{LOOPBACK}:{picks[1].grpc['users']}"}
