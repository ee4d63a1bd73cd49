"""Faults in the backend, under load (issue 7, item 1).

The Gearman example app runs on our prefork-threaded server (2 workers x 8 threads) and takes a
steady load of 32 concurrent clients, while we break the job server under it:

* gearmand is SIGKILLed and started again (same port) 2 s later. For each safeclients policy:
  no wrong result ever; every request during the outage gets a clean 503 (JSON error, no
  traceback) and gets it fast; broken client instances are discarded or replaced (``/stats``);
  every request started more than 2 s after the restart succeeds; and afterwards a burst of
  concurrent requests all complete, so no request thread stayed stuck. The load is the probe
  loop (bounded, every outcome timed): the time to full recovery is when the last failed
  request started, counted from the moment gearmand listens again.
* the Gearman worker is SIGKILLed in the middle of a slow job. The request ends in a clean 503
  (gearmand re-queues the job, and no worker runs it within the app's poll timeout); and once a
  new worker has finished the orphaned job, and its late result has reached the client that gave
  up on it, every client instance still serves requests (1,000 of them, all right).

Processes: the server is a child of the test (``ServerProcess``, stopped by PID on exit). The
gearmand-restart tests use the session's gearmand and workers (``examples/support/gearmand.py``);
the worker-kill tests run their own gearmand with one ``tests.reliability.slow_worker``.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from examples.support.gearmand import Gearmand, start_gearmand
from server.testing import REPO_ROOT, ServerProcess
from tests.reliability._traffic import Load, Outcome, burst, job, stats_by_pid, tally

pytestmark = pytest.mark.integration

POLICIES = ["per_thread", "locked", "pooled"]
WORKERS, THREADS, CONCURRENCY = 2, 8, 32
#: How long gearmand stays down.
OUTAGE = 2.0
#: Every request started this long after gearmand is back must succeed.
RECOVERY = 2.0
#: A request that meets the outage must be answered within this (a 503, not a hang). Generous:
#: the suite shares 2 cores with other test runs.
FAIL_FAST = 5.0
#: The client-side bound on one request; a hang shows up as a timeout outcome.
REQUEST_TIMEOUT = 20.0
#: The slow job's sleep in the worker, and the app's poll timeout for this test. The backend has
#: one worker: once it is killed, gearmand re-queues the job with no one to run it until the test
#: starts a new worker, after the request has timed out: a 503, deterministically.
SLOW_SECONDS, JOB_TIMEOUT = 2.5, 4.0
#: Requests sent once the orphaned job is done, to reach every client instance.
AFTER_REQUESTS = 1000


def _served(policy: str, address: str, **env: str) -> ServerProcess:
    """The Gearman app of ``policy`` on our server, 2 workers x 8 threads, using ``address``."""
    return ServerProcess(
        f"examples.gearman.app_{policy}:application",
        workers=WORKERS,
        threads=THREADS,
        env={"GEARMAN_SERVERS": address, **env},
    )


def _describe(outcomes: list[Outcome], limit: int = 5) -> str:
    return "; ".join(
        f"{o.kind} status={o.status} after {o.elapsed:.2f}s {o.error} {o.body[:160]!r}"
        for o in outcomes[:limit]
    )


def _stat_totals(docs: dict[int, Any]) -> dict[str, int]:
    """Sum ``created`` and ``discarded`` over the workers' ``/stats`` documents."""
    totals = {"created": 0, "discarded": 0}
    for doc in docs.values():
        stats = doc["stats"]
        for key in totals:
            totals[key] += int(stats[key])
    return totals


@pytest.fixture
def workers_ready(gearman_workers: Any) -> Iterator[Any]:
    """The session's Gearman workers, all running before and after the test."""
    gearman_workers.ensure()
    yield gearman_workers
    gearman_workers.ensure()


@pytest.mark.parametrize("policy", POLICIES)
def test_gearmand_killed_and_restarted_under_load(
    policy: str, gearmand: Any, workers_ready: Any
) -> None:
    with _served(policy, gearmand.address) as srv:
        warm = burst(srv.url, CONCURRENCY, timeout=REQUEST_TIMEOUT, prefix="warm")
        assert tally(warm)["ok"] == CONCURRENCY, f"warm-up failed: {_describe(warm)}"
        before = _stat_totals(stats_by_pid(srv.url, srv.worker_pids()))

        load = Load(
            srv.url, concurrency=CONCURRENCY, limit=100_000, timeout=REQUEST_TIMEOUT, prefix=policy
        ).start()
        try:
            assert load.wait_done(200, timeout=60.0), "the load did not get going within 60 s"
            killed_at = time.monotonic()
            gearmand.kill()
            # The outage's length is the scenario itself, not a wait for some event.
            time.sleep(OUTAGE)
            gearmand.start()
            restarted_at = time.monotonic()
            # Run on long enough past the recovery bound to see it hold.
            time.sleep(RECOVERY + 2.0)
        finally:
            outcomes = load.stop()

        counts = tally(outcomes)
        failed = [o for o in outcomes if o.kind != "ok"]
        outage = [o for o in outcomes if killed_at <= o.started <= restarted_at]
        late = [o for o in outcomes if o.started >= restarted_at + RECOVERY]
        recovered_after = max((o.started - restarted_at for o in failed), default=0.0)
        slowest_failure = max((o.elapsed for o in failed), default=0.0)
        print(
            f"\n[{policy}] {len(outcomes)} requests {counts}; outage requests {len(outage)}, "
            f"slowest failure {slowest_failure:.2f}s, last failure started "
            f"{recovered_after:+.2f}s after the restart, {len(late)} requests after "
            f"restart+{RECOVERY:.0f}s"
        )

        wrong = [o for o in failed if o.kind == "wrong"]
        assert not wrong, f"{len(wrong)} wrong results: {_describe(wrong)}"
        unclean = [o for o in failed if o.kind != "clean_503"]
        assert not unclean, f"{len(unclean)} failures were not clean 503s: {_describe(unclean)}"
        assert counts["clean_503"] > 0, "gearmand was down for 2 s yet no request failed"
        slow = [o for o in failed if o.elapsed > FAIL_FAST]
        assert not slow, f"{len(slow)} failures took over {FAIL_FAST}s: {_describe(slow)}"
        assert late, "no request was sent after the recovery bound"
        assert recovered_after <= RECOVERY, (
            f"a request started {recovered_after:.2f}s after the restart still failed "
            f"(bound {RECOVERY}s): {_describe([o for o in failed if o.started >= restarted_at])}"
        )

        after = _stat_totals(stats_by_pid(srv.url, srv.worker_pids()))
        print(f"[{policy}] client instances over both workers: before {before}, after {after}")
        assert after["discarded"] > before["discarded"] or after["created"] > before["created"], (
            f"no broken instance was discarded or replaced: before {before}, after {after}"
        )

        final = burst(srv.url, CONCURRENCY, timeout=REQUEST_TIMEOUT, prefix="after")
        assert tally(final)["ok"] == CONCURRENCY, (
            f"after the fault, {CONCURRENCY} concurrent requests did not all succeed: "
            f"{tally(final)}; {_describe([o for o in final if o.kind != 'ok'])}"
        )


class SlowWorkers:
    """``tests.reliability.slow_worker`` processes on their own gearmand (the session's is shared
    with the other tests, and its workers have no slow path). Runs in the test process; every
    child is stopped by its PID."""

    def __init__(self, server: Gearmand, count: int) -> None:
        self.server = server
        self.count = count
        self.procs: list[subprocess.Popen[bytes]] = []

    def ensure(self) -> None:
        """Start missing workers; return once ``count`` have registered ``reverse``."""
        self.procs = [p for p in self.procs if p.poll() is None]
        while len(self.procs) < self.count:
            self.procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "tests.reliability.slow_worker",
                        "--servers",
                        self.server.address,
                    ],
                    cwd=REPO_ROOT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        _poll(
            lambda: self.server.registered_workers() >= self.count,
            30.0,
            f"{self.count} slow workers to register",
        )

    def kill_one(self) -> None:
        """SIGKILL one live worker by PID and reap it."""
        proc = next(p for p in self.procs if p.poll() is None)
        proc.kill()
        proc.wait(10.0)

    def close(self) -> None:
        """SIGTERM every worker by PID; SIGKILL the ones still there after 10 s."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10.0)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10.0)


def _poll(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll another process's state (gearmand's: it has no event to wait on), bounded."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)


def _jobs(server: Gearmand) -> tuple[int, int]:
    """(queued, running) ``reverse`` jobs per gearmand's admin ``status`` (queued counts the
    running ones too)."""
    for line in server.admin("status"):
        fields = line.split("\t")
        if fields[0] == "reverse":
            return int(fields[1]), int(fields[2])
    return 0, 0


@pytest.fixture(scope="module")
def slow_backend() -> Iterator[SlowWorkers]:
    with start_gearmand() as server:
        workers = SlowWorkers(server, count=1)
        try:
            workers.ensure()
            yield workers
        finally:
            workers.close()


@pytest.mark.parametrize("policy", POLICIES)
def test_worker_killed_mid_job(policy: str, slow_backend: SlowWorkers) -> None:
    server = slow_backend.server
    slow_backend.ensure()
    with _served(policy, server.address, GEARMAN_JOB_TIMEOUT=str(JOB_TIMEOUT)) as srv:
        warm = burst(srv.url, CONCURRENCY, timeout=REQUEST_TIMEOUT, prefix="warm")
        assert tally(warm)["ok"] == CONCURRENCY, f"warm-up failed: {_describe(warm)}"

        # One slow job; the only Gearman worker dies while it runs it.
        slow: list[Outcome] = []
        payload = f"sleep:{SLOW_SECONDS}:{policy}"
        sender = threading.Thread(
            target=lambda: slow.append(job(srv.url, payload, timeout=REQUEST_TIMEOUT)), daemon=True
        )
        sender.start()
        _poll(lambda: _jobs(server)[1] >= 1, 30.0, "the slow job to be running")
        slow_backend.kill_one()
        sender.join(REQUEST_TIMEOUT + 10.0)
        assert slow, "the slow request never came back"
        print(f"\n[{policy}] the killed worker's request: " + _describe(slow))
        assert slow[0].kind == "clean_503", f"not a clean 503: {_describe(slow)}"

        # Let gearmand finish the orphaned job: its late WORK_COMPLETE goes to the client
        # that gave up on it, which must still serve the next requests.
        slow_backend.ensure()
        _poll(lambda: _jobs(server) == (0, 0), 30.0, "the re-queued slow job to finish")
        # Enough requests that every request thread (so every per-thread client, and the one
        # that gave up) serves some: 32 clients keep all 16 threads busy.
        load = Load(
            srv.url,
            concurrency=CONCURRENCY,
            limit=AFTER_REQUESTS,
            timeout=REQUEST_TIMEOUT,
            prefix="after",
            keep_ok=False,
        ).start()
        load.wait_done(AFTER_REQUESTS, timeout=120.0)
        failed = load.stop()
        assert load.counts()["ok"] == AFTER_REQUESTS, (
            f"after the worker died, requests failed: {load.counts()}; {_describe(failed)}"
        )
