"""The detector on a real Gearman client: two threads share one ``guarded`` client.

    .venv/bin/python -m examples.gearman.detect

Starts its own gearmand and two ``reverse`` workers on free loopback ports, releases two threads
together on one ``safeclients.guarded`` client, and prints the ``ConcurrentUseError`` the second
thread gets (both threads, both methods, the other thread's stack), then the proxy's stats.
Stops everything it started.
"""

from __future__ import annotations

import threading

import gearman

import safeclients
from examples.gearman._app import TASK
from examples.support.gearmand import start_gearmand, start_workers

JOBS_PER_THREAD = 50
JOIN_TIMEOUT = 30.0


def main() -> None:
    server = start_gearmand()
    try:
        workers = start_workers(server, count=2)
        try:
            run(server.address)
        finally:
            workers.close()
    finally:
        server.close()


def run(address: str) -> None:
    @safeclients.guarded
    def client() -> gearman.GearmanClient:
        return gearman.GearmanClient([address])

    barrier = threading.Barrier(2, timeout=JOIN_TIMEOUT)

    def submit(index: int) -> None:
        barrier.wait()
        for n in range(JOBS_PER_THREAD):
            try:
                client.submit_job(TASK, f"payload-{index}-{n}".encode(), poll_timeout=5.0)
            except safeclients.ConcurrentUseError as exc:
                print(exc)
                return

    threads = [threading.Thread(target=submit, args=(i,), name=f"request-{i}") for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    print(safeclients.stats(client))


if __name__ == "__main__":
    main()
