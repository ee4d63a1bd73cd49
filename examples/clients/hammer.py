"""The harness: build a client under a policy, run a unit of work from N threads, count.

Policies, as the examples name them:

- ``unsafe``: one raw client shared by every thread, the trap;
- ``guarded``: the same shared client behind ``safeclients.guarded(on_conflict="count")``, which
  changes nothing but counts the calls that overlapped;
- ``locked``, ``per_thread``, ``pooled``: the safeclients policies.

A unit of work that spans several calls (an HTTP request then its response, a SQL transaction)
must hold one instance throughout: :func:`unit` does that with ``safeclients.checkout`` for
``locked`` and ``pooled``; ``per_thread`` needs nothing, each thread has its own instance.

Threads: :func:`hammer` runs in the caller's thread and starts ``threads`` workers released
together by a Barrier; every loop is bounded by ``ops`` and by a deadline.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import safeclients

T = TypeVar("T")

POLICIES = ("unsafe", "guarded", "locked", "per_thread", "pooled")
SAFE_POLICIES = ("locked", "per_thread", "pooled")
POOL_SIZE = 4
POOL_TIMEOUT = 60.0
MAX_EXAMPLES = 5


def build(policy: str, factory: Callable[[], T]) -> T:
    """The client the threads share, under ``policy``."""
    if policy == "unsafe":
        return factory()
    if policy == "guarded":
        return safeclients.guarded(factory, on_conflict="count")
    if policy == "locked":
        return safeclients.locked(factory)
    if policy == "per_thread":
        return safeclients.per_thread(factory)
    if policy == "pooled":
        return safeclients.pooled(factory, size=POOL_SIZE, timeout=POOL_TIMEOUT)
    raise ValueError(f"unknown policy {policy!r}; expected one of {', '.join(POLICIES)}")


def release(policy: str, client: Any) -> None:
    """Close what ``build`` made: every instance a policy created, or the raw client."""
    if policy == "unsafe":
        client.close()
    else:
        safeclients.dispose(client, final=True)


@contextmanager
def unit(policy: str, client: T) -> Iterator[T]:
    """Hold one instance for a unit of work spanning several calls."""
    if policy in ("locked", "pooled"):
        with safeclients.checkout(client) as raw:
            yield raw
    else:
        yield client


@dataclass
class Tally:
    """What the threads saw: correct answers, wrong answers, exceptions by type."""

    ops: int = 0
    ok: int = 0
    wrong: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: ``safeclients.stats()`` of the proxy after the run (None for ``unsafe``).
    stats: safeclients.Stats | None = None

    @property
    def conflicts(self) -> int:
        """Overlapping calls the detector counted (0 unless the policy is ``guarded``)."""
        return self.stats.conflicts if self.stats is not None else 0

    @property
    def failures(self) -> int:
        return self.wrong + sum(self.errors.values())

    def summary(self) -> str:
        errors = ", ".join(f"{name} x{n}" for name, n in self.errors.most_common()) or "none"
        created = f"{self.stats.created} created" if self.stats is not None else "1 shared"
        return (
            f"{self.ops} ops: {self.ok} ok, {self.wrong} wrong, errors: {errors}; "
            f"instances: {created}; detector conflicts: {self.conflicts}; "
            f"{self.seconds:.1f} s"
        )


def hammer(
    work: Callable[[int, int], bool], *, threads: int = 16, ops: int = 50, deadline: float = 60.0
) -> Tally:
    """Run ``work(thread_index, op_index)`` ``ops`` times in each of ``threads`` threads.

    ``work`` returns True for a correct answer, False for a wrong one; an exception counts under
    its type name (that is the measurement, so every exception is recorded, none is ignored).
    """
    tally = Tally()
    # Guards every field of tally: the worker threads all update it.
    tally_lock = threading.Lock()
    start = threading.Barrier(threads + 1)
    stop_at = time.monotonic() + deadline

    def run(index: int) -> None:
        start.wait(timeout=deadline)
        for op in range(ops):
            if time.monotonic() > stop_at:
                return
            try:
                good = work(index, op)
            except Exception as exc:  # counted and kept: it is the measurement
                with tally_lock:
                    tally.ops += 1
                    tally.errors[type(exc).__name__] += 1
                    if len(tally.examples) < MAX_EXAMPLES:
                        tally.examples.append(f"{type(exc).__name__}: {exc}")
                continue
            with tally_lock:
                tally.ops += 1
                if good:
                    tally.ok += 1
                else:
                    tally.wrong += 1

    workers = [threading.Thread(target=run, args=(i,), name=f"hammer-{i}") for i in range(threads)]
    for worker in workers:
        worker.start()
    began = time.monotonic()
    start.wait(timeout=deadline)
    for worker in workers:
        worker.join(timeout=deadline + 30.0)
    tally.seconds = time.monotonic() - began
    stuck = [w.name for w in workers if w.is_alive()]
    if stuck:
        raise RuntimeError(
            f"{len(stuck)} of {threads} threads still running after "
            f"{deadline + 30.0:.0f} s: {stuck}"
        )
    return tally


def observe(policy: str, client: Any, tally: Tally) -> None:
    """Record the proxy's stats in ``tally`` (before ``release``, which closes everything)."""
    if policy != "unsafe":
        tally.stats = safeclients.stats(client)
