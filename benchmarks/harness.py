"""Timing: compile a statement into a loop, run compared variants interleaved.

A variant is a :class:`Case`: a one-call statement (``"obj.m(x)"``) and a setup
function returning the names it uses. The statement is compiled with
:mod:`timeit`'s template, so the loop is the same tight ``for`` loop for every
row and its overhead is identical across rows (it is part of the "raw call"
figure). Samples are whole batches (``number`` calls) timed with
``time.perf_counter_ns`` so the timer's own cost is amortised.

Drift (CPU frequency, other processes on this shared machine) is cancelled by
interleaving: repeat ``r`` measures every variant once, starting at a rotated
position, so no variant always runs first or last. We keep every sample and
report min (the least-disturbed run, used for ratios) and median.

A row whose setup or first call fails is recorded as skipped with the reason
(the library and the optional packages may be missing a piece); the other rows
still run.
"""

from __future__ import annotations

import gc
import itertools
import statistics
import threading
import time
import timeit
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

Namespace = dict[str, Any]

#: How long (seconds) a contended sample may take before we call it hung.
THREAD_JOIN_TIMEOUT = 120.0


@dataclass(frozen=True)
class Case:
    """One way of calling ``obj.m(x)``.

    ``baseline`` names (by key) the hand-written row that gives the same
    guarantees, for the "x baseline" column and the targets. ``teardown``
    receives the namespace after the last sample (to dispose pools).
    """

    key: str
    label: str
    stmt: str
    setup: Callable[[], Namespace]
    baseline: str | None = None
    teardown: Callable[[Namespace], None] | None = None
    # False: the row is meaningless from other threads (a value set in the
    # setup thread only, or a detector that rejects concurrent use by design).
    threaded: bool = True


@dataclass
class Samples:
    """Per-call nanoseconds of every sample of one case, or why it was skipped."""

    case: Case
    ns: list[float] = field(default_factory=list)
    skipped: str | None = None

    @property
    def min(self) -> float:
        return min(self.ns)

    @property
    def median(self) -> float:
        return statistics.median(self.ns)


@dataclass
class _Prepared:
    case: Case
    namespace: Namespace
    inner: Callable[[Iterator[None], Callable[[], int]], int]


def _prepare(case: Case) -> _Prepared:
    namespace = case.setup()
    timer = timeit.Timer(case.stmt, globals=namespace, timer=time.perf_counter_ns)
    # Timer keeps the compiled loop function as ``inner`` (not in typeshed).
    prepared = _Prepared(case, namespace, timer.inner)  # type: ignore[attr-defined]
    _run(prepared, 200)  # warm-up, and proof that the statement works
    return prepared


def _run(prepared: _Prepared, number: int) -> int:
    return prepared.inner(itertools.repeat(None, number), time.perf_counter_ns)


def time_calls(prepared: _Prepared, number: int) -> int:
    """Nanoseconds ``number`` calls of a prepared case take in this thread."""
    return _run(prepared, number)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:120]


def prepare_all(cases: Sequence[Case]) -> tuple[list[_Prepared], dict[str, Samples]]:
    """Set up every case; a failing one becomes a skipped :class:`Samples`."""
    prepared: list[_Prepared] = []
    results: dict[str, Samples] = {}
    for case in cases:
        results[case.key] = Samples(case)
        try:
            prepared.append(_prepare(case))
        # A missing optional package or an unfinished library feature must cost
        # one row, not the run; the reason is printed in the table.
        except Exception as exc:  # noqa: BLE001
            results[case.key].skipped = _describe(exc)
    return prepared, results


def teardown_all(prepared: Sequence[_Prepared]) -> None:
    for item in prepared:
        if item.case.teardown is not None:
            item.case.teardown(item.namespace)


def measure_interleaved(cases: Sequence[Case], *, number: int, repeats: int) -> dict[str, Samples]:
    """Per-call ns of each case in one thread, ``repeats`` rotated rounds."""
    prepared, results = prepare_all(cases)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for rep in range(repeats):
            shift = rep % max(len(prepared), 1)
            for item in prepared[shift:] + prepared[:shift]:
                try:
                    elapsed = _run(item, number)
                except Exception as exc:  # noqa: BLE001 - same reason as prepare_all
                    results[item.case.key].skipped = _describe(exc)
                    continue
                results[item.case.key].ns.append(elapsed / number)
    finally:
        if gc_was_enabled:
            gc.enable()
        teardown_all(prepared)
    for samples in results.values():
        if samples.skipped is None and not samples.ns:
            samples.skipped = "no sample"
    return results


def run_threads(prepared: _Prepared, *, threads: int, number: int) -> float:
    """Wall-clock ns per call while ``threads`` threads each make ``number`` calls.

    The threads start together on a barrier; the clock runs from the release to
    the last join, so thread start-up is not counted.
    """
    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def body() -> None:
        try:
            barrier.wait(timeout=THREAD_JOIN_TIMEOUT)
            _run(prepared, number)
        except BaseException as exc:  # reported to the caller below
            errors.append(exc)

    workers = [threading.Thread(target=body, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait(timeout=THREAD_JOIN_TIMEOUT)
    start = time.perf_counter_ns()
    for worker in workers:
        worker.join(timeout=THREAD_JOIN_TIMEOUT)
    elapsed = time.perf_counter_ns() - start
    if any(worker.is_alive() for worker in workers):
        raise TimeoutError(
            f"{prepared.case.key}: {threads} threads x {number} calls did not finish "
            f"in {THREAD_JOIN_TIMEOUT:.0f} s"
        )
    if errors:
        raise errors[0]
    return elapsed / (threads * number)
