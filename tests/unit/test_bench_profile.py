"""The request path benchmark sums py-spy's collapsed stacks into shares of the samples, and
reads CPU time (a process's, the load generators', the whole machine's) from /proc."""

from __future__ import annotations

import os

import pytest

from bench.processes import (
    CLOCK_TICKS_PER_SECOND,
    CpuSnapshot,
    cpu_now,
    cpu_seconds,
    machine_busy_seconds,
)
from bench.profile import UNCLAIMED, package, subsystem, summarize

SPINE = [
    "_run_module_as_main (<frozen runpy>:198)",
    "run (services/core/lifecycle.py:144)",
    "BaseEventLoop._run_once (asyncio/base_events.py:1922)",
    "Handle._run (asyncio/events.py:80)",
]
CONTEXT = "RequestContextInterceptor.around (services/core/interceptors/context.py:{line})"
PROCEED = "Call.proceed (services/core/interceptors/base.py:30)"
SPAWN = "greenlet_spawn (sqlalchemy/util/concurrency.py:{line})"
STACKS = [
    ([CONTEXT.format(line=40), "Logger._log (logging/__init__.py:1622)",
      "StreamHandler.emit (logging/__init__.py:1113)"], 3),
    ([CONTEXT.format(line=52), PROCEED, SPAWN.format(line=190)], 5),
    ([CONTEXT.format(line=52), PROCEED, PROCEED, SPAWN.format(line=201)], 1),
    ([], 1),
]  # fmt: skip
COLLAPSED = "".join(f"{';'.join(SPINE + frames)} {count}\n" for frames, count in STACKS)


def test_self_time_is_the_share_of_samples_a_function_was_running_whatever_the_line() -> None:
    summary = summarize(COLLAPSED)

    assert summary.samples == 10
    assert [(s.frame, s.percent) for s in summary.self_time] == [
        ("greenlet_spawn (sqlalchemy/util/concurrency.py)", 60.0),
        ("StreamHandler.emit (logging/__init__.py)", 30.0),
        ("Handle._run (asyncio/events.py)", 10.0),
    ]


def test_self_time_by_package_groups_our_code_by_its_service_or_the_kernel() -> None:
    summary = summarize(COLLAPSED)

    assert [(s.frame, s.percent) for s in summary.by_package] == [
        ("sqlalchemy", 60.0),
        ("logging", 30.0),
        ("asyncio", 10.0),
    ]
    assert package("UserRepository.get (services/users/repository.py:31)") == "services/users"


def test_total_time_counts_a_recursing_frame_once_and_leaves_out_the_shared_event_loop() -> None:
    total = {s.frame: s.percent for s in summarize(COLLAPSED).total_time}

    assert total["RequestContextInterceptor.around (services/core/interceptors/context.py)"] == 90.0
    assert total["Call.proceed (services/core/interceptors/base.py)"] == 60.0
    assert not any("asyncio" in frame or "lifecycle" in frame for frame in total)


def test_only_the_most_sampled_frames_are_kept() -> None:
    assert len(summarize(COLLAPSED, limit=2).self_time) == 2


def test_cpu_seconds_are_user_plus_system_ticks_even_when_the_command_name_has_spaces() -> None:
    # pid (comm) state ppid ... field 14 utime, field 15 stime
    fields = ["S", "1", *["0"] * 9, str(3 * CLOCK_TICKS_PER_SECOND), str(CLOCK_TICKS_PER_SECOND)]
    line = f"4242 (python -m x) {' '.join(fields)} 0 0 20 0 1"

    assert cpu_seconds(line) == pytest.approx(4.0)


def test_a_process_that_is_gone_has_used_no_cpu_and_a_live_one_some() -> None:
    used = cpu_now({"me": os.getpid(), "gone": 2**22 + 1})

    assert used["gone"] == 0.0
    assert used["me"] > 0.0


def test_the_machine_is_busy_for_all_but_its_idle_and_io_wait_time() -> None:
    # cpu  user nice system idle iowait irq softirq steal guest guest_nice
    stat = "cpu  100 20 30 1000 50 5 5 0 0 0\ncpu0 50 10 15 500 25 2 3 0 0 0\n"

    assert machine_busy_seconds(stat) == pytest.approx(160 / CLOCK_TICKS_PER_SECOND)


def test_others_cpu_is_what_the_machine_used_beyond_the_servers_and_the_load_generator() -> None:
    before = CpuSnapshot({"users": 1.0, "envoy": 0.5}, load_generators=0.5, machine=10.0)
    after = CpuSnapshot({"users": 2.5, "envoy": 0.75}, load_generators=1.0, machine=14.0)

    servers, others = after.used_since(before)

    assert servers == {"users": 1.5, "envoy": 0.25}
    assert others == pytest.approx(4.0 - 1.75 - 0.5)


def test_a_sample_is_spent_on_the_nearest_listed_frame_above_its_leaf() -> None:
    logging_under_chain = [*SPINE, CONTEXT.format(line=40), "Logger._log (logging/__init__.py:1)"]
    asyncio_under_peer = [
        *SPINE,
        "Peers.balance (services/users/peers.py:37)",
        "gather (asyncio/tasks.py:800)",
    ]

    assert subsystem(logging_under_chain) == "logging"
    assert subsystem(asyncio_under_peer) == "peer calls (grpc.aio client)"
    assert subsystem(SPINE) == UNCLAIMED


def test_subsystem_shares_add_up_to_every_sample() -> None:
    shares = {s.frame: s.percent for s in summarize(COLLAPSED).by_subsystem}

    assert shares == {
        "database (SQLAlchemy, driver, repository)": 60.0,
        "logging": 30.0,
        UNCLAIMED: 10.0,
    }
