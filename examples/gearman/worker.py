"""A Gearman worker that registers ``reverse`` (returns the payload reversed).

    python -m examples.gearman.worker --servers 127.0.0.1:4730[,host:port...]

Runs in its own process, single-threaded. SIGTERM/SIGINT only set a flag (no work in the signal
handler); the work loop polls with a short timeout, sees the flag in ``after_poll`` and returns,
and the process exits 0 after closing its connections.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from types import FrameType

import gearman

TASK = b"reverse"  # pygearman 0.2.6 matches task names as bytes
POLL_SECONDS = 0.5


class ReverseWorker(gearman.GearmanWorker):  # type: ignore[misc]
    """A GearmanWorker whose loop ends once :attr:`stopping` is set."""

    def __init__(self, host_list: list[str]) -> None:
        super().__init__(host_list)
        self.stopping = False

    def after_poll(self, any_activity: bool) -> bool:
        return not self.stopping


def client_id(pid: int) -> bytes:
    """The id this worker gives gearmand (listed by the admin ``workers`` command)."""
    return f"reverse-worker-{pid}".encode()


def reverse(worker: gearman.GearmanWorker, job: gearman.job.GearmanJob) -> bytes:
    data: bytes = job.data
    return data[::-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--servers", default="127.0.0.1:4730", help="comma-separated host:port list of job servers"
    )
    args = parser.parse_args(argv)
    worker = ReverseWorker([s.strip() for s in args.servers.split(",") if s.strip()])

    def request_stop(signum: int, frame: FrameType | None) -> None:
        worker.stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    worker.set_client_id(client_id(os.getpid()))  # lets a test harness tell its workers apart
    worker.register_task(TASK, reverse)
    while not worker.stopping:
        # work() returns when after_poll says stop; a lost job server raises and we retry.
        try:
            worker.work(poll_timeout=POLL_SECONDS)
        except (gearman.errors.GearmanError, OSError) as exc:
            print(f"worker: {type(exc).__name__}: {exc}; reconnecting", file=sys.stderr)
            signal.sigtimedwait([signal.SIGTERM, signal.SIGINT], POLL_SECONDS)
    worker.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
