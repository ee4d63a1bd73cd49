"""A Gearman ``reverse`` worker with a slow path, for the worker-killed-mid-job test.

    python -m tests.reliability.slow_worker --servers 127.0.0.1:PORT

Same task and result as ``examples.gearman.worker`` (the payload reversed), but a payload
``sleep:SECONDS:...`` first sleeps SECONDS, so a test can kill the worker while it holds a job.
The demo worker stays free of test hooks; this one lives with the test that needs it.

Runs in its own process, single-threaded; the test stops it by PID. SIGTERM sets the loop's stop
flag (nothing else happens in the handler).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from types import FrameType

import gearman

from examples.gearman.worker import POLL_SECONDS, TASK, ReverseWorker

SLOW_PREFIX = b"sleep:"


def reverse_slowly(worker: gearman.GearmanWorker, job: gearman.job.GearmanJob) -> bytes:
    """``reverse``; a ``sleep:SECONDS:...`` payload sleeps first (the job a test kills us in)."""
    data: bytes = job.data
    if data.startswith(SLOW_PREFIX):
        time.sleep(float(data.split(b":")[1]))
    return data[::-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", required=True, help="comma-separated host:port list")
    args = parser.parse_args(argv)
    worker = ReverseWorker([s.strip() for s in args.servers.split(",") if s.strip()])

    def request_stop(signum: int, frame: FrameType | None) -> None:
        worker.stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    worker.register_task(TASK, reverse_slowly)
    while not worker.stopping:
        try:
            worker.work(poll_timeout=POLL_SECONDS)
        except (gearman.errors.GearmanError, OSError) as exc:
            print(f"slow worker: {type(exc).__name__}: {exc}; reconnecting", file=sys.stderr)
            signal.sigtimedwait([signal.SIGTERM], POLL_SECONDS)
    worker.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
