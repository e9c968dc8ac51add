"""The request path benchmark's ratios are the ones issue 6 sets goals on, per engine, by
requests/s and by CPU per request, and its CPU figure is per answered request."""

from __future__ import annotations

import pytest

from bench.loadgen import LoadResult
from bench.report import Measured, median_rounds, ratios

RPS = {
    "noop_rpc_bare": 2000.0,
    "noop_rpc": 1600.0,
    "refused_by_validation": 1200.0,
    "get_user_grpc": 300.0,
    "get_user_rest_envoy": 250.0,
    "fastapi_1_worker": 500.0,
    "fastapi_2_workers": 1000.0,
}


# CPU seconds the serving processes used for 1,000 requests of each path.
CPU = {
    "noop_rpc_bare": 0.25,
    "noop_rpc": 0.5,
    "refused_by_validation": 0.625,
    "get_user_grpc": 5.0,
    "get_user_rest_envoy": 8.0,
    "fastapi_1_worker": 2.0,
    "fastapi_2_workers": 2.0,
}


def rows(engine: str, scale: float = 1.0) -> list[Measured]:
    return [
        Measured(path, engine, LoadResult(1000, 0, rps * scale, 1.0, 2.0), {"server": CPU[path]})
        for path, rps in RPS.items()
    ]


def test_the_ratios_compare_paths_of_the_same_engine_only() -> None:
    measured = rows("sqlite") + rows("postgres", scale=2.0)

    assert ratios(measured, "sqlite") == {
        "refused_by_validation_over_noop": 0.75,
        "refused_by_validation_over_noop_by_cpu": 0.8,
        "refused_by_validation_over_bare_noop": 0.6,
        "refused_by_validation_over_bare_noop_by_cpu": 0.4,
        "noop_over_bare_noop": 0.8,
        "noop_over_bare_noop_by_cpu": 0.5,
        "get_user_grpc_rps": 300.0,
        "rest_via_envoy_over_fastapi_same_workers": 0.5,
        "rest_via_envoy_over_fastapi_same_workers_by_cpu": 0.25,
        "rest_via_envoy_over_fastapi_2_workers": 0.25,
    }
    assert ratios(measured, "postgres")["get_user_grpc_rps"] == 600.0


def test_server_cpu_per_request_adds_up_every_serving_process() -> None:
    row = Measured(
        "get_user_rest_envoy",
        "sqlite",
        LoadResult(requests=500, errors=0, rps=250.0, p50_ms=60.0, p99_ms=120.0),
        {"users": 1.5, "credits": 0.25, "mining": 0.25, "envoy": 0.5},
    )

    assert row.cpu_ms_per_request == pytest.approx(5.0)
    assert row.as_json()["server_cpu_ms_per_request"] == 5.0


def measured(path: str, engine: str, rps: float) -> Measured:
    return Measured(path, engine, LoadResult(100, 0, rps, 1.0, 2.0), {"users": 0.5})


def test_of_several_rounds_the_one_with_the_median_requests_per_second_is_kept() -> None:
    rows = [
        measured("noop_rpc", "sqlite", 900.0),
        measured("get_user_grpc", "sqlite", 80.0),
        measured("noop_rpc", "sqlite", 1500.0),
        measured("get_user_grpc", "sqlite", 60.0),
        measured("noop_rpc", "sqlite", 1200.0),
        measured("get_user_grpc", "sqlite", 70.0),
        measured("noop_rpc", "postgres", 1000.0),
    ]

    kept = median_rounds(rows)

    assert [(row.path, row.engine, row.result.rps) for row in kept] == [
        ("noop_rpc", "sqlite", 1200.0),
        ("get_user_grpc", "sqlite", 70.0),
        ("noop_rpc", "postgres", 1000.0),
    ]
    assert kept[0].as_json()["rounds_rps"] == [900.0, 1500.0, 1200.0]


def test_of_two_rounds_the_slower_is_kept() -> None:
    kept = median_rounds(
        [measured("noop_rpc", "sqlite", 900.0), measured("noop_rpc", "sqlite", 1e3)]
    )

    assert kept[0].result.rps == 900.0
