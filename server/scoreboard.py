"""Shared memory between the master and one worker: which request each core is running.

Like uWSGI's per-core request slots: the master allocates a :class:`Scoreboard` for a worker
before forking it (an anonymous ``MAP_SHARED`` mapping survives ``fork()``), each core of the
worker (slot 0: the main thread; slots 1..M-1: the request threads) writes its own slot at the
start and end of every request, and the master reads all slots to enforce ``--harakiri``.
Times are ``time.monotonic()`` (CLOCK_MONOTONIC, one clock for every process on the machine).

Each slot has a single writer (its core's thread) and a single reader (the master). The writer
stores the path before the start time and clears the start time when done, so the reader never
pairs a start time with a path from a later request; a torn read at worst reports a stale path.
"""

from __future__ import annotations

import mmap
import struct
import time

_SLOT = struct.Struct("=dH246s")  # started (0: idle), path length, path bytes
_PATH_MAX = 246


class Scoreboard:
    """The request slots of one worker (``threads`` of them)."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._map = mmap.mmap(-1, _SLOT.size * threads)

    def begin(self, slot: int, method: str, path: str) -> None:
        """Request thread ``slot`` starts a request (runs in that worker thread)."""
        label = f"{method} {path}".encode("latin-1", "replace")[:_PATH_MAX]
        offset = slot * _SLOT.size
        struct.pack_into("=H246s", self._map, offset + 8, len(label), label)
        struct.pack_into("=d", self._map, offset, time.monotonic())

    def end(self, slot: int) -> None:
        """Request thread ``slot`` finished its request (runs in that worker thread)."""
        struct.pack_into("=d", self._map, slot * _SLOT.size, 0.0)

    def overdue(self, limit: float) -> list[tuple[int, float, str]]:
        """(slot, seconds running, "METHOD path") of requests running over ``limit`` (master)."""
        now = time.monotonic()
        late = []
        for slot in range(self.threads):
            started, length, label = _SLOT.unpack_from(self._map, slot * _SLOT.size)
            if started and now - started > limit:
                late.append((slot, now - started, label[:length].decode("latin-1")))
        return late

    def close(self) -> None:
        """Unmap (master, after the worker is reaped)."""
        self._map.close()
