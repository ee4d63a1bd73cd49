"""How many of a worker's cores do HTTP work at once (``--protocol-cores``), first come first
served.

Why: a worker's cores are threads of one CPython process, so they take turns on the GIL, and
every system call a request makes (``epoll_wait``, ``recv``, ``send``, ``epoll_ctl``) lets the
GIL go to whichever thread gets it first, in no order (CPython's "convoy effect", bpo-7946).
With eight cores busy on a fast application a request can lose that draw many times over:
with a worker on a CPU of its own and the load from another (``benchmarks/server_bench.py
--pin``), hello world kept alive had a p99 of 55 ms at a p50 of 0.6 ms. Fewer cores is no
answer: an application that waits on a database needs them all. A limit alone is not either:
the same test with at most 2 cores at once, but a freed permit going to whichever core asks
first, kept the 60 ms tail; what removes it is the order.

So the server's own work, from the event a core takes to the connection handed back (reading,
parsing, writing, parking), runs under a permit: at most ``limit`` cores hold one, and a core
that finds none waits in line and is handed one by the core that leaves, in arrival order (no
overtaking). The application runs without a permit (:meth:`pause`): the call, the iteration of
a body that is not a list, the iterable's ``close()``, so a request waiting on a database never
holds one, and the worker still runs M requests at once. Its permit is lent meanwhile: a core
waiting in line is handed it at once; with none waiting, a core arriving takes it, and if none
did the caller takes it back without a thread switch (a hello-world call lasts microseconds).
Server work never waits on a client (every socket is non-blocking), so a permit is held for
microseconds. Pinned as above, with ``--protocol-cores 2``: the same throughput, p99 1.4-3 ms.

Why it is off by default (``--protocol-cores 0``: :class:`Unlimited`, whose methods do
nothing, so the default path takes no lock): a hand-off wakes a sleeping thread, and the line
waits until the OS runs it. When the workers share their CPUs with each other and with the
load generator (the same benchmark unpinned, 2 workers on 2 CPUs), that wake-up is slow and
varies: with the limit, the hello-world keep-alive p99 was 9.8, 58.6, 23.2 and 23.9 ms in
four runs (22.8-31.1 ms without), at 15-30 % fewer requests/s, while the connection-per-request
and heavy-page tails were lower in all four. Use it where each worker
has a CPU (server/README.md, Speed).

Which thread: any core of the worker (threads, and core 0 on the main thread), one permit per
thread at most; the permit a thread holds is recorded per thread, so :meth:`pause` is safe in
code that may run with or without one (an iterable closed by a sweep).
"""

from __future__ import annotations

import threading
from collections import deque


class Admission:
    """Per worker: at most ``limit`` permits out at once (``limit`` >= cores: never waits)."""

    __slots__ = ("limit", "_running", "_lent", "_waiting", "_lock", "_held")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"an admission limit is at least 1, not {limit}")
        self.limit = limit
        # While a core waits: _running == limit and _lent == 0 (a freed or lent permit
        # goes to the first in line), so a core arriving never overtakes one waiting.
        self._running = 0  # permits out (held or lent)
        self._lent = 0  # of those, lent to an application's code (pause)
        self._waiting: deque[threading.Lock] = deque()  # one locked lock per waiting core
        self._lock = threading.Lock()  # guards the counts and _waiting; never held while waiting
        self._held = threading.local()  # .permit: this thread holds one

    def enter(self) -> None:
        """Take a permit: one lent to an application's code (:meth:`pause`), else a new one
        below ``limit``, else wait in line to be handed one."""
        with self._lock:
            if self._lent:
                self._lent -= 1
                self._held.permit = True
                return
            if self._running < self.limit:
                self._running += 1
                self._held.permit = True
                return
            turn = threading.Lock()
            turn.acquire()
            self._waiting.append(turn)
        try:
            turn.acquire()  # released by the core that hands its permit over
        except BaseException:  # a signal's exception on core 0 while waiting
            self._give_up(turn)
            raise
        self._held.permit = True

    def leave(self) -> None:
        """Give the permit back: to the core waiting longest, if any. Nothing if this thread
        holds none (a ``with`` whose body's :meth:`enter` after a :meth:`pause` was
        interrupted by a signal's exception: that permit was never taken)."""
        held = self._held
        if not getattr(held, "permit", False):
            return
        held.permit = False
        with self._lock:
            if self._waiting:
                self._waiting.popleft().release()  # handed over: _running unchanged
            else:
                self._running -= 1

    def pause(self) -> bool:
        """Before the application's code: lend this thread's permit, if it holds one. The
        core waiting longest is handed it at once; with none waiting it stays lent, so a
        core arriving while this one waits on a database takes it, and if none did this
        thread takes it back without a thread switch (a hello-world application's call
        lasts microseconds). True when there was a permit: the caller calls :meth:`enter`
        after that code, however it ends (``try``/``finally``)."""
        held = self._held
        if not getattr(held, "permit", False):
            return False
        held.permit = False
        with self._lock:
            if self._waiting:
                self._waiting.popleft().release()  # handed over
            else:
                self._lent += 1
        return True

    def __enter__(self) -> None:
        self.enter()

    def __exit__(self, *exc: object) -> None:
        self.leave()

    def holds(self) -> bool:
        """Whether the calling thread holds a permit (tests, assertions)."""
        return bool(getattr(self._held, "permit", False))

    def counts(self) -> tuple[int, int, int]:
        """(permits out, of which lent, cores waiting) now (tests)."""
        with self._lock:
            return self._running, self._lent, len(self._waiting)

    def _give_up(self, turn: threading.Lock) -> None:
        """An exception while ``turn`` waited: leave the line, or, if the permit was handed
        over just before, pass it on."""
        with self._lock:
            try:
                self._waiting.remove(turn)
                return
            except ValueError:
                pass
        self._held.permit = True
        self.leave()


class Unlimited(Admission):
    """``--protocol-cores 0``: no limit, nothing to count (every method returns at once)."""

    def __init__(self) -> None:
        super().__init__(1)

    def enter(self) -> None:
        pass

    def leave(self) -> None:
        pass

    def pause(self) -> bool:
        return False

    def __enter__(self) -> None:  # (not via enter: the default path, once per event)
        pass

    def __exit__(self, *exc: object) -> None:
        pass
