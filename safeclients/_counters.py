"""A policy's counters: what ``safeclients.stats(proxy)`` reports, per process.

Only slow paths count (creation, close, a wait, a conflict): the per-call fast paths never
touch them. Which thread runs what: any request thread counts; a fork child starts afresh
(``Policy._reset_common``).
"""

from __future__ import annotations

import threading

from safeclients.stats import Stats


class Counters:
    """Created, closed, discarded, failed closes, waits and conflicts of one policy."""

    def __init__(self) -> None:
        # Guards every field below.
        self._lock = threading.Lock()
        self._created = 0
        self._closed = 0
        self._discarded = 0
        self._close_failed = 0
        self._waits = 0
        self._wait_seconds = 0.0
        self._conflicts = 0

    def created(self) -> None:
        with self._lock:
            self._created += 1

    def closed(self, ok: bool, *, discarded: bool) -> None:
        """One close: only one that succeeded is counted as closed (or discarded)."""
        with self._lock:
            if not ok:
                self._close_failed += 1
            elif discarded:
                self._discarded += 1
            else:
                self._closed += 1

    def waited(self, seconds: float) -> None:
        with self._lock:
            self._waits += 1
            self._wait_seconds += seconds

    def conflict(self) -> None:
        with self._lock:
            self._conflicts += 1

    def snapshot(self, kind: str, live: int) -> Stats:
        """The counters as a ``Stats``; ``live`` is read by the caller, outside this lock."""
        with self._lock:
            return Stats(
                policy=kind,
                created=self._created,
                closed=self._closed,
                discarded=self._discarded,
                live=live,
                waits=self._waits,
                wait_seconds=self._wait_seconds,
                conflicts=self._conflicts,
                close_failed=self._close_failed,
            )


__all__ = ["Counters"]
