"""Memory: what a ``per_thread`` proxy keeps after its threads have exited.

A threaded server's request threads come and go (uWSGI/gunicorn recycle
workers, our server's pool may be resized, user code spawns threads). A
per-thread proxy that keeps an instance, or a bookkeeping record, per thread
that ever touched it leaks one connection per thread. We check, in a child
process (so the heap is ours alone):

* after ``small`` threads (1,000) each used the proxy once and exited: how many
  client instances are still alive (weak references), what ``stats()`` says,
  and how many gc-tracked objects exist compared with after one thread (a
  per-thread record of any shape shows up there);
* RSS (``/proc/self/statm``) after ``small`` threads and after ``large`` ones
  (100,000 in the full run): the growth must stay under 5 MiB.

Threads run sequentially in batches of ``batch`` (started together, joined
together), so the time stays bounded (~0.1 ms per thread here) and the number
of live threads stays small; a deadline stops the large run early (reported).

``python -m benchmarks.memory --small 1000 --large 100000`` is the child; it
prints one JSON document.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import asdict, is_dataclass
from typing import Any

from benchmarks.micro import MODES, wrapt_mode

CHILD_TIMEOUT = 600.0
JOIN_TIMEOUT = 60.0
PAGE = os.sysconf("SC_PAGE_SIZE")


class Tracked:
    """A client whose instances we can count through weak references."""

    alive: weakref.WeakSet[Tracked] = weakref.WeakSet()

    def __init__(self) -> None:
        Tracked.alive.add(self)

    def m(self, x: Any) -> Any:
        return x

    def close(self) -> None:
        """Nothing to release."""


def rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * PAGE


def _use_in_threads(proxy: Any, count: int, batch: int, deadline: float) -> int:
    """Run ``count`` threads that each call the proxy once; return how many ran."""
    failures: list[BaseException] = []

    def body() -> None:
        try:
            proxy.m(1)
        except BaseException as exc:  # collected and re-raised in the caller
            failures.append(exc)

    done = 0
    while done < count and time.monotonic() < deadline:
        threads = [threading.Thread(target=body) for _ in range(min(batch, count - done))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=JOIN_TIMEOUT)
            if thread.is_alive():
                raise TimeoutError(f"a thread using the proxy did not finish in {JOIN_TIMEOUT} s")
        done += len(threads)
        if failures:
            raise failures[0]
    return done


def _stats(proxy: Any) -> dict[str, Any] | None:
    import safeclients

    stats = safeclients.stats(proxy)
    return asdict(stats) if is_dataclass(stats) and not isinstance(stats, type) else None


def _gc_objects() -> int:
    gc.collect()
    return len(gc.get_objects())


def measure(*, small: int, large: int, batch: int, max_seconds: float) -> dict[str, Any]:
    import safeclients

    deadline = time.monotonic() + max_seconds
    proxy = safeclients.per_thread(Tracked)
    _use_in_threads(proxy, 1, 1, deadline)
    objects_after_one = _gc_objects()
    ran_small = _use_in_threads(proxy, small - 1, batch, deadline) + 1
    objects_after_small = _gc_objects()
    alive_after_small = len(Tracked.alive)
    stats_after_small = _stats(proxy)
    rss_small = rss_bytes()
    ran_large = ran_small + _use_in_threads(proxy, large - ran_small, batch, deadline)
    gc.collect()
    rss_large = rss_bytes()
    alive_after_large = len(Tracked.alive)
    return {
        "small": ran_small,
        "large": ran_large,
        "large_asked": large,
        "alive_after_small": alive_after_small,
        "alive_after_large": alive_after_large,
        "gc_objects_after_one": objects_after_one,
        "gc_objects_after_small": objects_after_small,
        "stats_after_small": stats_after_small,
        "rss_small": rss_small,
        "rss_large": rss_large,
        "mode": wrapt_mode(),
    }


def run_child(
    mode: str, *, small: int, large: int, batch: int = 50, max_seconds: float = 120.0
) -> dict[str, Any]:
    """Measure in a fresh interpreter using wrapt mode ``mode``."""
    env = {k: v for k, v in os.environ.items() if k != "WRAPT_DISABLE_EXTENSIONS"}
    env.update(MODES[mode])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.memory",
            "--small",
            str(small),
            "--large",
            str(large),
            "--batch",
            str(batch),
            "--max-seconds",
            str(max_seconds),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"memory child ({mode}) exited {proc.returncode}: {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    args = parser.parse_args()
    result = measure(
        small=args.small, large=args.large, batch=args.batch, max_seconds=args.max_seconds
    )
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
