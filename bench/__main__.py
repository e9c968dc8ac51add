"""`python -m bench`, what `make bench` runs: every benchmark of bench/, each in a process of its
own (one's imports, metrics and children must not colour the next's figures).

A benchmark is a module with a `main`, found by looking, so a new one (a new service's, say)
runs without being listed anywhere; a module that is run more than once, with other arguments,
says so in `RUNS` (one tuple of arguments per run).
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import bench

Run = tuple[str, tuple[str, ...]]


def benchmarks() -> list[Run]:
    """Each benchmark module's runs, as (module, arguments), in the order of the modules' names."""
    runs: list[Run] = []
    for found in sorted(pkgutil.iter_modules(bench.__path__), key=lambda m: m.name):
        if found.name.startswith("_"):
            continue
        module = importlib.import_module(f"bench.{found.name}")
        if callable(getattr(module, "main", None)):
            runs.extend((module.__name__, tuple(args)) for args in getattr(module, "RUNS", ((),)))
    return runs


def main() -> None:
    for name, arguments in benchmarks():
        print(f"== python -m {' '.join((name, *arguments))}", flush=True)
        subprocess.run([sys.executable, "-m", name, *arguments], check=True)


if __name__ == "__main__":
    main()
