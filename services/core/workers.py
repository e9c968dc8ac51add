"""Several worker processes per service on one port, as uvicorn has workers.

With R3MES_WORKERS above 1 the process started (`python -m services.<name>`) binds nothing: it
starts that many copies of its own command line as workers, each of which serves on the same port
(SO_REUSEPORT, so the kernel spreads connections over them), forwards SIGTERM and SIGINT to them
and waits. The workers are new processes (fork and exec), never forks of one with gRPC running,
which gRPC does not support.

If a worker dies on its own, the others are stopped too and the supervisor exits non-zero, so the
process manager above restarts a whole, known state instead of serving on with fewer workers.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from types import FrameType

from services.core.settings import Settings

WORKER_ENV = "R3MES_WORKER_INDEX"

logger = logging.getLogger(__name__)


def is_supervisor(settings: Settings) -> bool:
    return settings.workers > 1 and WORKER_ENV not in os.environ


def supervise(count: int) -> int:
    """Start `count` workers, pass signals on, and return the exit code of the whole."""
    command = [sys.executable, *sys.orig_argv[1:]]
    workers = {
        worker.pid: worker
        for worker in (
            subprocess.Popen(command, env={**os.environ, WORKER_ENV: str(index)})
            for index in range(count)
        )
    }
    logger.info("workers started", extra={"workers": sorted(workers)})
    stopping = False

    def stop_all(signum: int, _frame: FrameType | None = None) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers.values():
            if worker.returncode is None:
                worker.send_signal(signum)

    previous = {sig: signal.signal(sig, stop_all) for sig in (signal.SIGTERM, signal.SIGINT)}
    exit_code = 0
    try:
        running = set(workers)
        while running:
            pid, status = os.wait()  # a signal runs stop_all, then the wait resumes
            if pid not in running:
                continue
            running.discard(pid)
            code = os.waitstatus_to_exitcode(status)
            workers[pid].returncode = code
            if code != 0 or not stopping:
                logger.error("worker exited", extra={"pid": pid, "exit_code": code})
                exit_code = 1
            if not stopping:
                stop_all(signal.SIGTERM)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return exit_code
