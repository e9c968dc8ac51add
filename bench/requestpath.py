"""The request path, layer by layer, in one run: what one call costs on our server stack, and the
same read in the FastAPI + SQLAlchemy app a user would write instead.

    python -m bench.requestpath [--seconds 3] [--rounds 1] [--engines sqlite postgres]
                                [--topologies one-process split] [--workers 1] [--profile DIR]

Per storage engine and topology (every service in one process, as `make run` starts them, or
one process per service: its rows are labelled `<engine>-split`), in turn at 16 requests in
flight: a no-op RPC on a bare grpc.aio server and
on our server stack, and GetUser refused by validation (h2load: what the chain costs), GetUser
of an existing user direct (h2load) and as REST through Envoy (wrk), and the baseline under
uvicorn with 1 and 2 workers (wrk). Each reply kind is checked once with a Python client before
its load. Load generators, services and Envoy share this machine's cores: the figures compare
paths within one run. docs/performance.md explains every column."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from bench import checks
from bench.checks import NOOP_REQUEST
from bench.loadgen import Load, LoadResult, h2load_grpc, wrk_get
from bench.processes import CpuSnapshot, process_tree
from bench.profile import ProfileSummary, finish_recording, start_recording
from bench.report import Measured, median_rounds, print_report, report
from bench.results import RESULTS_DIR, write_results
from runner.local_stack import ONE_PROCESS, LocalStack, Topology, running_stack
from services.core.registry import NAMES
from services.core.testing import own_redis_server

RESULTS = RESULTS_DIR / "requestpath.json"
# What `make bench` (python -m bench) runs: the default, and again with two workers per service.
RUNS = ((), ("--workers", "2", "--out", str(RESULTS_DIR / "requestpath-2-workers.json")))
POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
GET_USER = "/r3mes.users.v1.UsersService/GetUser"
READY_TIMEOUT_SECONDS = 60.0
ENGINES = ("sqlite", "postgres")
TOPOLOGIES: tuple[Topology, ...] = ("one-process", "split")
PROFILE_SECONDS = 5
PROFILED = ("get_user_grpc", "get_user_rest_envoy")


@dataclass(frozen=True)
class Options:
    seconds: int
    warm_up_seconds: int
    rounds: int
    load: Load
    profile_dir: Path | None
    work_dir: Path
    workers: int = 1


@dataclass(frozen=True)
class Target:
    """One path, ready to load: `load(seconds)` runs the generator, `pids` serve it, the users
    service runs in `profiled` (when it serves the path)."""

    path: str
    load: Callable[[int], LoadResult]
    pids: Mapping[str, int]
    profiled: int | None = None


@dataclass
class Run:
    """What one engine's run has measured (every round) and profiled so far."""

    engine: str  # the engine, and `-split` when one process runs each service
    options: Options
    measured: list[Measured]
    profiles: dict[str, ProfileSummary]

    def measure(self, target: Target) -> None:
        target.load(self.options.warm_up_seconds)
        before = CpuSnapshot.take(target.pids)
        began = time.monotonic()
        result = target.load(self.options.seconds)
        elapsed = time.monotonic() - began
        servers, others = CpuSnapshot.take(target.pids).used_since(before)
        if result.requests == 0:
            raise RuntimeError(f"{target.path} on {self.engine}: no request was answered")
        others_share = others / (elapsed * (os.cpu_count() or 1))
        self.measured.append(Measured(target.path, self.engine, result, servers, others_share))

    def profile(self, target: Target) -> None:
        """A load of its own while py-spy samples users, so sampling never skews the table."""
        if self.options.profile_dir is None or target.profiled is None:
            return
        out = self.options.profile_dir / f"{target.path}-{self.engine}.txt"
        recording = start_recording(target.profiled, PROFILE_SECONDS, out)
        target.load(PROFILE_SECONDS + 1)
        self.profiles[target.path] = finish_recording(recording, out)


def with_workers(name: str, pid: int) -> dict[str, int]:
    """The process and the workers below it (`R3MES_WORKERS`), which do the serving."""
    return {name if i == 0 else f"{name}.{i}": child for i, child in enumerate(process_tree(pid))}


def serving(stack: LocalStack, *names: str) -> dict[str, int]:
    """The processes that serve these services (or envoy), each once however many services it
    hosts, with their workers."""
    pids = {}
    for process in dict.fromkeys(stack.process_of(name) for name in names):
        pids.update(with_workers(process, stack.pid_of(process)))
    return pids


def targets(stack: LocalStack, options: Options, running: ExitStack) -> list[Target]:
    """Every path, its processes started (kept running by `running`) and its reply checked."""
    load, log_dir = options.load, options.work_dir
    found = []
    for path, bare in (("noop_rpc_bare", True), ("noop_rpc", False)):
        target, pid = running.enter_context(checks.noop_server(stack, log_dir, bare=bare))
        checks.noop_answers(target)
        noop = partial(h2load_grpc, checks.noop_url(target), NOOP_REQUEST, load)
        found.append(Target(path, noop, with_workers("noop", pid)))

    users = stack.grpc_target("users")
    get_user_url = f"http://{users}{GET_USER}"
    refused = checks.get_user_request("not-a-wallet")
    checks.get_user_refused(users, refused)
    refuse = partial(h2load_grpc, get_user_url, refused, load)
    found.append(Target("refused_by_validation", refuse, serving(stack, "users")))

    wallet = checks.create_user(users)
    request = checks.get_user_request(wallet)
    checks.get_user_answers(users, request)
    services = serving(stack, "users", "credits", "mining")
    users_pid = stack.pid_of("users")
    direct = partial(h2load_grpc, get_user_url, request, load)
    found.append(Target("get_user_grpc", direct, services, users_pid))

    rest_url = f"{stack.rest_url}/v1/users/{wallet}"
    rest_body = checks.rest_answers(rest_url, wallet)
    rest = partial(wrk_get, rest_url, load)
    with_envoy = {**services, **serving(stack, "envoy")}
    found.append(Target("get_user_rest_envoy", rest, with_envoy, users_pid))

    for workers, path in ((1, "fastapi_1_worker"), (2, "fastapi_2_workers")):
        url, processes = running.enter_context(checks.baseline(stack, workers, log_dir))
        baseline_url = f"{url}/v1/users/{wallet}"
        checks.baseline_answers(baseline_url, rest_body)
        found.append(Target(path, partial(wrk_get, baseline_url, load), processes()))
    return found


def measure_stack(run: Run, stack: LocalStack) -> None:
    """Every path in turn, round after round, so other work on the machine spreads over all
    paths rather than falling on one; then the profiles."""
    with ExitStack() as running:
        ready = targets(stack, run.options, running)
        for _ in range(run.options.rounds):
            for target in ready:
                run.measure(target)
        for target in ready:
            if target.path in PROFILED:
                run.profile(target)


@contextmanager
def engine_environment(engine: str, postgres_url: str) -> Iterator[dict[str, str]]:
    """The stack's settings for `engine`; PostgreSQL gets schemas of this run, dropped after.

    The rate limiter is off: every load comes from one address and would be refused after the
    policy's count (h2load cannot tell a gRPC refusal from an answer); its cost is measured
    side by side by bench.ratelimit."""
    limiter_off = {"R3MES_RATELIMIT_BACKEND": "off"}
    if engine == "sqlite":
        yield limiter_off
        return
    suffix = f"_bench{uuid.uuid4().hex[:8]}"
    try:
        yield {
            **limiter_off,
            "R3MES_DATABASE_URL": postgres_url,
            "R3MES_SCHEMA_SUFFIX": suffix,
            "R3MES_MIGRATE_ON_START": "true",
        }
    finally:
        asyncio.run(checks.drop_schemas(postgres_url, [name + suffix for name in NAMES]))


@contextmanager
def read_model_environment(
    engine: str, topology: Topology, work_dir: Path
) -> Iterator[dict[str, str]]:
    """Split, or on PostgreSQL, a Redis of the run's own, as such deployments have: users then
    reads its read model (kept from credits' and mining's events) instead of asking them on
    every GetUser (users_read_model=auto). One process on SQLite is `make run`: no Redis."""
    if topology == ONE_PROCESS and engine == "sqlite":
        yield {}
        return
    redis_dir = work_dir / "redis"
    redis_dir.mkdir()
    with own_redis_server(redis_dir) as server:
        yield {"R3MES_REDIS_URL": server.url}


def run_engine(engine: str, topology: Topology, options: Options, postgres_url: str) -> Run:
    label = engine if topology == ONE_PROCESS else f"{engine}-split"
    work_dir = options.work_dir / label
    work_dir.mkdir()
    run = Run(label, replace(options, work_dir=work_dir), [], {})
    with (
        engine_environment(engine, postgres_url) as extra,
        read_model_environment(engine, topology, work_dir) as events,
        running_stack(
            work_dir,
            internal_token=secrets.token_urlsafe(16),
            extra_environment={**extra, **events, "R3MES_WORKERS": str(options.workers)},
            ready_timeout_seconds=READY_TIMEOUT_SECONDS,
            topology=topology,
        ) as stack,
    ):
        measure_stack(run, stack)
    return run


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.requestpath", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--seconds", type=int, default=3, help="measured time per path")
    parser.add_argument("--warm-up", type=int, default=1, help="unmeasured load before each")
    parser.add_argument(
        "--rounds", type=int, default=1, help="measure every path this many times, in turn"
    )
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--topologies", nargs="+", choices=TOPOLOGIES, default=list(TOPOLOGIES))
    parser.add_argument(
        "--workers",
        type=int,
        choices=(1, 2),
        default=1,
        help="processes per service process (R3MES_WORKERS); compared with as many uvicorn ones",
    )
    parser.add_argument("--postgres-url", default=POSTGRES_URL)
    parser.add_argument("--profile", type=Path, help="also profile GetUser with py-spy, into DIR")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    load = Load()
    with tempfile.TemporaryDirectory(prefix="r3mes-requestpath-") as work_dir:
        options = Options(
            args.seconds,
            args.warm_up,
            args.rounds,
            load,
            args.profile,
            Path(work_dir),
            args.workers,
        )
        runs = [
            run_engine(engine, topology, options, args.postgres_url)
            for engine in args.engines
            for topology in args.topologies
        ]
    rows = median_rounds([row for run in runs for row in run.measured])
    profiles = {run.engine: run.profiles for run in runs}
    figures = report(rows, load, args.seconds, args.rounds, profiles, args.workers)
    print_report(figures)
    write_results(figures, args.out)


if __name__ == "__main__":
    main()
