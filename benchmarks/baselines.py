"""The fake client and the hand-written alternatives a user would write instead.

Each alternative is written the way its usual source writes it (the comment
names the source), with the same guarantees as the safeclients policy it is the
baseline of, fork check included: ``os.getpid()`` per call is what redis-py's
pool and the usual "reconnect after fork" idiom pay, because a fork that runs
no at-fork hooks (uWSGI without ``--lazy-apps``) is otherwise invisible.

Two rows replace the ``os.getpid()`` system call by a cheaper check that is
still sound under a fork that runs no at-fork hook: :class:`ForkGeneration`
reads one byte of a page the kernel zeroes in the child of *any* fork
(``madvise(MADV_WIPEONFORK)``, Linux >= 4.14), so it needs no cooperation from
whoever forks (uWSGI forks from C and runs no Python hooks by default).

All of this runs in the benchmark process only; nothing here forks (the tests
of the idea fork; see ``ForkGeneration``'s docstring).
"""

from __future__ import annotations

import mmap
import os
import queue
import threading
from collections.abc import Callable
from typing import Any


class FakeClient:
    """A stand-in client whose call costs as little as a Python call can."""

    def m(self, x: Any) -> Any:
        return x

    def close(self) -> None:
        """Nothing to release; present so pools and policies can close it."""


class FakeDBAPIConnection(FakeClient):
    """Just enough of a DBAPI connection for SQLAlchemy's pool (reset = rollback)."""

    def rollback(self) -> None:
        """Reset-on-return calls this; a fake has no transaction."""

    def commit(self) -> None:
        """Part of the DBAPI surface; unused."""

    def cursor(self) -> None:
        """Part of the DBAPI surface; unused."""


class ForkSafeLocal:
    """The usual idiom: a ``threading.local`` filled lazily, refilled after a fork.

    ``get()`` is the whole per-call cost: one thread-local read, one
    ``os.getpid()``, one compare.
    """

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._local = threading.local()  # this thread's client and the pid it was made in

    def get(self) -> Any:
        local = self._local
        client = getattr(local, "client", None)
        pid = os.getpid()
        if client is None or local.pid != pid:
            client = local.client = self._factory()
            local.pid = pid
        return client


#: ``MADV_WIPEONFORK`` from <linux/mman.h>; Python 3.11's mmap module lacks the name.
MADV_WIPEONFORK = 18


class ForkGeneration:
    """A fork counter that notices every fork without at-fork hooks or a system call.

    One private anonymous page marked ``MADV_WIPEONFORK`` holds a 1 in byte 0;
    the kernel hands the child of any ``fork()`` a zeroed copy. ``current()``
    reads the byte (an ``mmap`` subscript, no system call); on a 0 it re-arms
    the byte and counts one more generation. Whatever was made in an older
    generation belongs to an ancestor process.

    The counter, not the byte, is what holders compare: the first thread of the
    child that sees the 0 re-arms it, and every other holder must still learn
    that a fork happened. Raises ``OSError``/``ValueError`` where the kernel or
    platform lacks ``MADV_WIPEONFORK``.
    """

    def __init__(self) -> None:
        self.page = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.page.madvise(MADV_WIPEONFORK)
        self.page[0] = 1
        self.generation = 0
        self._rearm_lock = threading.Lock()  # guards re-arming the page and the counter

    def current(self) -> int:
        if not self.page[0]:
            self.rearm()
        return self.generation

    def rearm(self) -> None:
        """Called (from any thread) by whoever reads a 0: count the fork once."""
        with self._rearm_lock:
            if not self.page[0]:
                self.page[0] = 1
                self.generation += 1


class ForkSafeLocalWipe(ForkSafeLocal):
    """:class:`ForkSafeLocal` with :class:`ForkGeneration` in place of ``os.getpid()``."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        super().__init__(factory)
        self._forks = ForkGeneration()

    def get(self) -> Any:
        local = self._local
        client = getattr(local, "client", None)
        forks = self._forks
        if not forks.page[0]:  # current(), inlined: this is the hot path
            forks.rearm()
        generation = forks.generation
        if client is None or local.generation != generation:
            client = local.client = self._factory()
            local.generation = generation
        return client


class PidCheckedLock:
    """A shared client behind a lock, replaced (not closed) in a forked child.

    Used inline by the benchmark statement (``if getpid() != h.pid: ...``,
    then ``with h.lock:``) since inline code is the cheapest a user can write.
    """

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self.lock = threading.Lock()  # guards self.client: one caller at a time
        self.client = factory()
        self.pid = os.getpid()

    def after_fork(self) -> None:
        """Drop the parent's client without closing it; the parent still owns it."""
        self.lock = threading.Lock()
        self.client = self._factory()
        self.pid = os.getpid()


class ConditionPool:
    """A list of clients and a Condition: get waits until one is free."""

    def __init__(self, factory: Callable[[], Any], size: int) -> None:
        self._free = [factory() for _ in range(size)]
        self._free_changed = threading.Condition()  # guards self._free

    def get(self) -> Any:
        with self._free_changed:
            while not self._free:
                self._free_changed.wait()
            return self._free.pop()

    def put(self, client: Any) -> None:
        with self._free_changed:
            self._free.append(client)
            self._free_changed.notify()


class LifoQueuePool:
    """redis-py's ``BlockingConnectionPool`` shape: a pre-filled LifoQueue + pid check.

    The queue is filled with ``None`` placeholders and a client is made on first
    use of a slot, as redis-py does; a pid change resets the whole pool (the
    child drops the parent's clients without closing them).
    """

    def __init__(self, factory: Callable[[], Any], size: int, timeout: float = 5.0) -> None:
        self._factory = factory
        self._size = size
        self._timeout = timeout
        self._reset_lock = threading.Lock()  # guards the reset after a fork
        self._reset()

    def _reset(self) -> None:
        self._pool: queue.LifoQueue[Any] = queue.LifoQueue(self._size)
        for _ in range(self._size):
            self._pool.put_nowait(None)
        self._pid = os.getpid()

    def _checkpid(self) -> None:
        if self._pid != os.getpid():
            with self._reset_lock:
                if self._pid != os.getpid():
                    self._reset()

    def get(self) -> Any:
        self._checkpid()
        try:
            client = self._pool.get(block=True, timeout=self._timeout)
        except queue.Empty:
            client = None
            empty = True
        else:
            empty = False
        if empty:
            raise TimeoutError(f"no client free within {self._timeout} s")
        if client is None:
            client = self._factory()
        return client

    def put(self, client: Any) -> None:
        self._checkpid()
        self._pool.put_nowait(client)
