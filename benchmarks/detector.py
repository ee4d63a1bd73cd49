"""The cost of a call through prove's reporting detector (``python -m benchmarks.detector``).

One thread, a do-nothing client: ``client.m(x)`` on the raw client, through the detector that
``python -m safeclients prove`` and ``hammer`` install (``safeclients._prove.detector.Watched``),
and through ``safeclients.guarded`` (the library's own detector, the baseline); 15 interleaved
rounds of 20,000 calls; the median and the minimum of each are printed, with the ratios to
guarded. A stand-alone script: the detector runs in a proving run, never in production, so it
is no row of ``python -m benchmarks``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable

import safeclients
from safeclients._prove.detector import Sink, Track, Watched

ROUNDS = 15
CALLS = 20_000


class Client:
    def m(self, x: int) -> int:
        return x


def _time(call: Callable[[int], int]) -> float:
    start = time.perf_counter()
    for n in range(CALLS):
        call(n)
    return (time.perf_counter() - start) / CALLS * 1e9


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        raw = Client()
        watched = Watched(Client(), Track(0, Sink(directory)))
        guarded = safeclients.guarded(Client, on_conflict="count")
        cases: dict[str, Callable[[int], int]] = {
            "raw call": lambda n: raw.m(n),
            "safeclients.guarded (baseline)": lambda n: guarded.m(n),
            "prove's detector (Watched)": lambda n: watched.m(n),
        }
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for call in cases.values():
            call(0)  # first use: creates guarded's instance, writes the detector's use event
        for _ in range(ROUNDS):
            for name, call in cases.items():
                samples[name].append(_time(call))
    base = statistics.median(samples["safeclients.guarded (baseline)"])
    print(f"{'way of calling client.m(x)':<34} {'median ns':>10} {'min ns':>8} {'x guarded':>10}")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"{name:<34} {median:>10.0f} {min(values):>8.0f} {median / base:>10.2f}")


if __name__ == "__main__":
    main()
