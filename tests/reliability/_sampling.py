"""Resource figures of a running server (master and each worker): open file descriptors,
threads and RSS, sampled with psutil on a background thread, then judged for flatness.

Workers recycle (``--max-requests``), so one worker's life is short and a leak inside it is
reset by the next fork. Two questions are therefore asked separately:

* within a life: does a worker hold more at the end of its life than in its middle? (a leak per
  request: the last third's peak against the middle third's; the first third is warm-up. For
  fds and threads the middle third's peak, as they swing with the requests in flight; for RSS,
  which only creeps, its low point);
* across lives: does a late worker hold more than the first ones did? (a leak that survives the
  recycle, e.g. something the master accumulates and hands to each new fork).

The sampler runs in the pytest process, on one daemon thread, and only reads ``/proc`` through
psutil; a worker that exits between listing and reading is simply skipped for that round.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

MB = 1024 * 1024
#: A life with fewer samples is too short to split into thirds and judge within itself.
MIN_SAMPLES = 4


@dataclass(frozen=True)
class Sample:
    """One reading of one process. ``t`` is ``time.monotonic()``."""

    t: float
    fds: int
    threads: int
    rss: int


@dataclass
class Life:
    """Every sample of one process, in time order."""

    pid: int
    samples: list[Sample] = field(default_factory=list)

    def low(self, metric: str, part: slice = slice(None)) -> int:
        """The lowest reading of ``metric`` within ``part``."""
        return min(int(getattr(s, metric)) for s in self.samples[part])

    def peak(self, metric: str, part: slice = slice(None)) -> int:
        """The highest reading of ``metric`` ("fds", "threads" or "rss") within ``part``."""
        return max(int(getattr(s, metric)) for s in self.samples[part])

    def thirds(self) -> tuple[slice, slice]:
        """Slices for the middle and the last third of the samples."""
        n = len(self.samples)
        return slice(n // 3, 2 * n // 3), slice(2 * n // 3, n)


def children(pid: int) -> list[int]:
    """The pids of ``pid``'s direct children (a prefork master's workers), [] if it is gone."""
    try:
        return [child.pid for child in psutil.Process(pid).children()]
    except psutil.NoSuchProcess:
        return []


def read(pid: int) -> Sample | None:
    """One sample of ``pid``, or None if it is gone (a recycled worker exits at any time)."""
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            return Sample(
                time.monotonic(), proc.num_fds(), proc.num_threads(), proc.memory_info().rss
            )
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None


class Sampler:
    """Samples the master and every current worker every ``interval`` seconds until stopped.

    ``list_workers`` is called on the sampler thread; the default lists the master's children
    through psutil (rather than asking the test's ServerProcess object from a second thread).
    Lives are kept in the order their pid was first seen.
    """

    def __init__(
        self,
        master_pid: int,
        list_workers: Callable[[], list[int]] | None = None,
        *,
        interval: float = 0.5,
    ) -> None:
        self.master = Life(master_pid)
        self.workers: dict[int, Life] = {}  # written by the sampler thread until __exit__ joins
        self._list_workers = list_workers or (lambda: children(master_pid))
        self._interval = interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._thread.join(30.0)
        assert not self._thread.is_alive(), "the sampler thread did not stop within 30 s"

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._round()
            self._stopping.wait(self._interval)

    def _round(self) -> None:
        master = read(self.master.pid)
        if master is not None:
            self.master.samples.append(master)
        for pid in self._list_workers():
            sample = read(pid)
            if sample is not None:
                self.workers.setdefault(pid, Life(pid)).samples.append(sample)

    def lives(self) -> list[Life]:
        """Worker lives with at least one sample, in the order they were first seen."""
        return [life for life in self.workers.values() if life.samples]


def table(sampler: Sampler) -> str:
    """The figures, one line per process: samples, fds / threads / RSS at the first sample, in
    the middle third, and in the last third (peaks)."""
    lines = [
        f"{'process':>16} {'n':>4} {'fds first/mid/last':>20} {'threads f/m/l':>15} "
        f"{'rss MB first/mid/last':>24}"
    ]
    for name, life in [("master", sampler.master)] + [
        (f"worker {i + 1}", life) for i, life in enumerate(sampler.lives())
    ]:
        if not life.samples:
            continue
        mid, last = life.thirds()
        if not life.samples[mid]:
            mid = last = slice(None)

        def fig(
            metric: str, scale: int = 1, life: Any = life, mid: Any = mid, last: Any = last
        ) -> str:
            return "/".join(
                f"{v / scale:.1f}" if scale > 1 else str(v)
                for v in (
                    getattr(life.samples[0], metric),
                    life.peak(metric, mid),
                    life.peak(metric, last),
                )
            )

        lines.append(
            f"{name + ' ' + str(life.pid):>16} {len(life.samples):>4} "
            f"{fig('fds'):>20} {fig('threads'):>15} {fig('rss', MB):>24}"
        )
    return "\n".join(lines)


def summary(sampler: Sampler, *, generation: int) -> str:
    """One line: the first ``generation`` workers' peaks against the last ``generation``'s, and
    the largest growth within one life (last third's peak minus the middle third's peak; for
    RSS, minus its low point)."""
    lives = sampler.lives()
    first, last = lives[:generation], lives[-generation:]

    def peaks(group: list[Life]) -> str:
        return (
            f"fds {max(life.peak('fds') for life in group)}, "
            f"threads {max(life.peak('threads') for life in group)}, "
            f"rss {max(life.peak('rss') for life in group) / MB:.1f} MB"
        )

    judged = [life for life in lives if len(life.samples) >= MIN_SAMPLES]
    growth = {
        m: max((life.peak(m, life.thirds()[1]) - _base(life, m) for life in judged), default=0)
        for m in ("fds", "threads", "rss")
    }
    return (
        f"{len(lives)} worker lives; first {generation}: {peaks(first)}; last {generation}: "
        f"{peaks(last)}; largest growth within a life ({len(judged)} judged): fds "
        f"{growth['fds']:+d}, threads {growth['threads']:+d}, rss "
        f"{growth['rss'] / 1024:+.0f} KB; master fds {sampler.master.peak('fds')}, "
        f"rss {sampler.master.peak('rss') / MB:.1f} MB"
    )


@dataclass(frozen=True)
class Slack:
    """What counts as flat. fds vary with the client sockets a worker holds at the moment of the
    sample (up to one per request thread), threads by the odd helper thread, RSS by allocator
    noise (measured: under 100 KB within a life of the Gearman app's workers, about 21 MB each;
    the bound here is 5 % + 2 MB)."""

    fds: int
    threads: int = 1
    rss_ratio: float = 0.05
    rss_bytes: int = 2 * MB

    def rss_limit(self, base: int) -> int:
        return int(base * (1 + self.rss_ratio)) + self.rss_bytes


def _base(life: Life, metric: str) -> int:
    """What the last third of a life is compared with (see the module docstring)."""
    mid = life.thirds()[0]
    return life.low(metric, mid) if metric == "rss" else life.peak(metric, mid)


def growth_problems(
    sampler: Sampler, *, generation: int, slack: Slack, min_samples: int = MIN_SAMPLES
) -> list[str]:
    """Sentences naming every figure that grew beyond ``slack``; empty when all are flat.

    ``generation`` is the number of workers the server runs: the first ``generation`` lives are
    the baseline for the later ones. Lives with fewer than ``min_samples`` samples are too short
    to judge within themselves but still count against the baseline.
    """
    problems: list[str] = []
    lives = sampler.lives()
    for life in lives + [sampler.master]:
        if len(life.samples) < min_samples:
            continue
        last = life.thirds()[1]
        for metric, limit in (
            ("fds", _base(life, "fds") + slack.fds),
            ("threads", _base(life, "threads") + slack.threads),
            ("rss", slack.rss_limit(_base(life, "rss"))),
        ):
            if life.peak(metric, last) > limit:
                problems.append(
                    f"pid {life.pid}: {metric} peaked at {life.peak(metric, last)} in the last "
                    f"third of its {len(life.samples)} samples, above {limit} (middle third "
                    f"{_base(life, metric)} + slack)"
                )
    first, later = lives[:generation], lives[generation:]
    if first:
        base = {m: max(life.peak(m) for life in first) for m in ("fds", "threads", "rss")}
        limits = {
            "fds": base["fds"] + slack.fds,
            "threads": base["threads"] + slack.threads,
            "rss": slack.rss_limit(base["rss"]),
        }
        for index, life in enumerate(later, start=generation + 1):
            for metric, limit in limits.items():
                if life.peak(metric) > limit:
                    problems.append(
                        f"worker {index} (pid {life.pid}): {metric} peaked at "
                        f"{life.peak(metric)}, above {limit} (first workers' peak "
                        f"{base[metric]} + slack)"
                    )
    return problems
