"""The contended table: the same calls from many threads at once.

For each thread-safe row of the per-call table, we time ``threads`` threads
that each make the same number of calls, released together by a barrier, and
divide the wall time by the total number of calls. The number of calls is
calibrated per row so that one thread's share runs about ``thread_ms``
milliseconds: many of the interpreter's 5 ms switch intervals, or the threads
would simply run one after another and never contend. Under the GIL only one thread runs
Python at a time, so the ideal is the single-thread cost; what grows it is the
price of contention (lock hand-offs, Condition waits, GIL switches while a
lock or a pool slot is held). The single-thread figure is measured the same way
(one thread, barrier, join) in the same interleaved rounds.

Runs in the current process (the runner's wrapt mode, normally the C one).
"""

from __future__ import annotations

import gc
import statistics
import sys
from typing import Any

from benchmarks.cases import CONTENDED_THREADS, contended_extra_cases, per_call_cases
from benchmarks.harness import prepare_all, run_threads, teardown_all, time_calls

THREADS = CONTENDED_THREADS
CALIBRATION_CALLS = 2_000
MIN_CALLS = 2_000
MAX_CALLS = 1_000_000


def _calls_for(item: Any, thread_ms: float) -> int:
    # Min of a few short runs: one unlucky run on this shared machine would
    # otherwise shrink the row's work (and its contention) several times over.
    per_call = min(time_calls(item, CALIBRATION_CALLS) for _ in range(5)) / CALIBRATION_CALLS
    return max(MIN_CALLS, min(MAX_CALLS, int(thread_ms * 1e6 / max(per_call, 1.0))))


def measure(*, thread_ms: float, repeats: int, threads: int = THREADS) -> dict[str, Any]:
    """Per-call ns with 1 and with ``threads`` threads, per thread-safe row."""
    cases = [case for case in per_call_cases() if case.threaded] + contended_extra_cases()
    prepared, results = prepare_all(cases)
    single: dict[str, list[float]] = {item.case.key: [] for item in prepared}
    many: dict[str, list[float]] = {item.case.key: [] for item in prepared}
    errors: dict[str, str] = {}
    calls = {item.case.key: _calls_for(item, thread_ms) for item in prepared}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for rep in range(repeats):
            shift = rep % max(len(prepared), 1)
            for item in prepared[shift:] + prepared[:shift]:
                key = item.case.key
                if key in errors:
                    continue
                try:
                    single[key].append(run_threads(item, threads=1, number=calls[key]))
                    many[key].append(run_threads(item, threads=threads, number=calls[key]))
                # One row failing under threads (a real bug in a policy) must
                # be reported in its row, not end the table.
                except Exception as exc:  # noqa: BLE001
                    errors[key] = f"{type(exc).__name__}: {exc}".splitlines()[0][:120]
    finally:
        if gc_was_enabled:
            gc.enable()
        teardown_all(prepared)
    rows = []
    for key, samples in results.items():
        row: dict[str, Any] = {"key": key, "label": samples.case.label}
        reason = samples.skipped or errors.get(key)
        if reason is not None or not single.get(key):
            row["skipped"] = reason or "no sample"
        else:
            row.update(
                calls=calls[key],
                single_min=min(single[key]),
                single_median=statistics.median(single[key]),
                many_min=min(many[key]),
                many_median=statistics.median(many[key]),
                # Each round measures 1 thread then N threads back to back: their ratio
                # shares the round's weather, so these are steadier than a ratio of medians.
                ratios=[m / o for m, o in zip(many[key], single[key], strict=True)],
            )
        rows.append(row)
    return {
        "threads": threads,
        "thread_ms": thread_ms,
        "repeats": repeats,
        "switch_interval": sys.getswitchinterval(),
        "rows": rows,
    }
