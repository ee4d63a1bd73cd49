"""Quick per-call overhead of each safeclients policy against a raw call and hand-written
equivalents that give the same guarantees (fork check included). One thread, ``obj.m(x)``.

    .venv/bin/python -m benchmarks.micro_quick [--number N] [--repeat R]
    WRAPT_DISABLE_EXTENSIONS=1 .venv/bin/python -m benchmarks.micro_quick

The variants are timed interleaved (round-robin, min of repeats), so machine drift cancels in
the ratios; only ratios from one run are comparable. Owned by the CORE helper; the full
benchmark suite lives next to it.
"""

from __future__ import annotations

import argparse
import os
import queue
import threading
import time
import timeit
from collections.abc import Callable

import wrapt  # type: ignore[import-untyped]

import safeclients
from safeclients import _fork


class Client:
    """The wrapped client: one cheap method."""

    def m(self, x: int) -> int:
        return x

    def close(self) -> None:
        pass


def _raw() -> Callable[[], object]:
    obj = Client()
    return lambda: obj.m(1)


def _local_idiom() -> Callable[[], object]:
    """The hand-written fork-safe threading.local idiom: lazy create + pid check."""
    local = threading.local()

    def get() -> Client:
        try:
            client: Client = local.client
            if local.pid == os.getpid():
                return client
        except AttributeError:
            pass
        local.client = client = Client()
        local.pid = os.getpid()
        return client

    return lambda: get().m(1)


def _lock_idiom() -> Callable[[], object]:
    """Hand-written pid check + `with lock:` around the call."""
    state = {"pid": os.getpid(), "client": Client()}
    lock = threading.Lock()

    def call(x: int) -> int:
        with lock:
            if state["pid"] != os.getpid():
                state["pid"], state["client"] = os.getpid(), Client()
            client: Client = state["client"]  # type: ignore[assignment]
            return client.m(x)

    return lambda: call(1)


def _lifo_pool() -> Callable[[], object]:
    """A queue.LifoQueue pool with a pid check (redis-py style)."""
    pool: queue.LifoQueue[Client] = queue.LifoQueue(4)
    for _ in range(4):
        pool.put(Client())
    state = {"pid": os.getpid()}

    def call(x: int) -> int:
        if state["pid"] != os.getpid():
            raise RuntimeError("forked")
        client = pool.get(timeout=5.0)
        try:
            return client.m(x)
        finally:
            pool.put(client)

    return lambda: call(1)


def _sqlalchemy_pool() -> Callable[[], object] | None:
    try:
        from sqlalchemy.pool import QueuePool
    except ImportError:
        return None
    pool = QueuePool(Client, pool_size=4, max_overflow=0, timeout=5.0, reset_on_return=None)

    def call(x: int) -> int:
        conn = pool.connect()
        try:
            return conn.m(x)  # type: ignore[no-any-return]
        finally:
            conn.close()

    return lambda: call(1)


def _wrapt_forwarding() -> Callable[[], object]:
    class Forwarding(wrapt.BaseObjectProxy):  # type: ignore[misc]
        def m(self, x: int) -> int:
            result: int = self.__wrapped__.m(x)
            return result

    proxy = Forwarding(Client())
    return lambda: proxy.m(1)


def _policy(make: Callable[[type[Client]], Client]) -> Callable[[], Callable[[], object]]:
    def build() -> Callable[[], object]:
        proxy = make(Client)
        proxy.m(1)
        return lambda: proxy.m(1)

    return build


VARIANTS: list[tuple[str, Callable[[], Callable[[], object] | None]]] = [
    ("raw call", _raw),
    ("wrapt BaseObjectProxy forwarding m", _wrapt_forwarding),
    ("hand-written threading.local + pid check", _local_idiom),
    ("safeclients.per_thread", _policy(safeclients.per_thread)),
    ("hand-written pid check + with lock", _lock_idiom),
    ("safeclients.locked", _policy(safeclients.locked)),
    ("LifoQueue pool + pid check", _lifo_pool),
    ("SQLAlchemy QueuePool connect+call+close", _sqlalchemy_pool),
    ("safeclients.pooled (size 4)", _policy(lambda f: safeclients.pooled(f, size=4))),
    # count mode: the contended run really overlaps (the detector's job is to notice).
    ("safeclients.guarded (detector)", _policy(lambda f: safeclients.guarded(f, on_conflict="count"))),
]

# (policy row, baseline row, target ratio)
TARGETS = [
    ("safeclients.per_thread", "hand-written threading.local + pid check", 1.25),
    ("safeclients.locked", "hand-written pid check + with lock", 1.25),
    ("safeclients.pooled (size 4)", "LifoQueue pool + pid check", 0.5),
    ("safeclients.pooled (size 4)", "SQLAlchemy QueuePool connect+call+close", 0.2),
]


def measure(number: int, repeat: int) -> dict[str, float]:
    """ns per call for each variant, min over `repeat` interleaved rounds."""
    calls = {}
    for name, build in VARIANTS:
        call = build()
        if call is not None:
            calls[name] = call
    best = {name: float("inf") for name in calls}
    for _ in range(repeat):
        for name, call in calls.items():
            seconds = timeit.timeit(call, number=number)
            best[name] = min(best[name], seconds / number * 1e9)
    return best


def contended(threads: int, number: int) -> dict[str, float]:
    """ns per call (wall time x threads / calls) with `threads` threads calling at once."""
    result = {}
    for name, build in VARIANTS:
        call = build()
        if call is None:
            continue
        barrier = threading.Barrier(threads + 1)

        def run(call: Callable[[], object] = call, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            for _ in range(number):
                call()
            barrier.wait()

        workers = [threading.Thread(target=run) for _ in range(threads)]
        for worker in workers:
            worker.start()
        barrier.wait()
        start = time.perf_counter()
        barrier.wait()
        elapsed = time.perf_counter() - start
        for worker in workers:
            worker.join()
        result[name] = elapsed / (number * threads) * 1e9
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, default=8, help="contended run; 0 to skip")
    args = parser.parse_args()
    mode = "pure-Python" if os.environ.get("WRAPT_DISABLE_EXTENSIONS") else "C extension"
    fork_check = "MADV_WIPEONFORK page" if _fork.WIPEONFORK else "os.getpid() fallback"
    best = measure(args.number, args.repeat)
    raw = best["raw call"]
    print(f"wrapt {mode}; fork check: {fork_check}; ns/call of obj.m(x), min of {args.repeat}")
    print("| way of calling obj.m(x) | ns/call | x raw |\n|---|---:|---:|")
    for name, ns in best.items():
        print(f"| {name} | {ns:.0f} | {ns / raw:.1f} |")
    print("\n| target | ratio | limit | met |\n|---|---:|---:|---|")
    for policy, baseline, limit in TARGETS:
        if policy in best and baseline in best:
            ratio = best[policy] / best[baseline]
            met = "yes" if ratio <= limit else "NO"
            print(f"| {policy} / {baseline} | {ratio:.2f} | {limit} | {met} |")
    if args.threads:
        busy = contended(args.threads, args.number // 4)
        print(f"\n{args.threads} threads at once (ns per call, all threads):")
        print("| way of calling obj.m(x) | ns/call | x its 1-thread cost |\n|---|---:|---:|")
        for name, ns in busy.items():
            print(f"| {name} | {ns:.0f} | {ns / best[name]:.2f} |")


if __name__ == "__main__":
    main()
