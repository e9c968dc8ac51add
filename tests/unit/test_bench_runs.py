"""`make bench` (python -m bench) runs every benchmark of bench/, found by looking."""

from __future__ import annotations

import ast

from bench.__main__ import benchmarks
from bench.results import RESULTS_DIR
from gateway.paths import ROOT


def test_make_bench_runs_each_module_with_a_main_and_requestpath_again_on_two_workers() -> None:
    with_main = {
        f"bench.{path.stem}"
        for path in (ROOT / "bench").glob("[!_]*.py")
        if any(
            isinstance(node, ast.FunctionDef) and node.name == "main"
            for node in ast.parse(path.read_text()).body
        )
    }

    runs = benchmarks()

    assert {name for name, _ in runs} == with_main
    assert "bench.noop_server" not in with_main  # a server benchmarks start, no benchmark
    assert [arguments for name, arguments in runs if name == "bench.requestpath"] == [
        (),
        ("--workers", "2", "--out", str(RESULTS_DIR / "requestpath-2-workers.json")),
    ]
    assert len(runs) == len(with_main) + 1
