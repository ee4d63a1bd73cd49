"""Which core of a worker waits in epoll, which core takes the next event, and how many do HTTP
work at once (``--protocol-cores``, 2 by default).

Why: a worker's cores are threads of one CPython process, so they take turns on the GIL, and
every system call a request makes (``epoll_wait``, ``recv``, ``send``, ``epoll_ctl``) lets the
GIL go to whichever thread grabs it first, in no order (CPython's "convoy effect", bpo-7946).
When every core waits in epoll for an event of its own (``--protocol-cores 0``, the server
before 0.4), a burst of events makes all of them runnable at once, and a request can lose that
draw many times over: with a worker on a CPU of its own (``benchmarks/server_bench.py --pin``),
hello world kept alive had a p99 of 53 ms at a p50 of 0.58 ms, 71 ms for a page of Python work.

What the relay does instead:

* **One poller.** One core at a time waits in epoll, for up to ``BATCH`` events. It keeps the
  first and queues the others, in the order epoll gave them (epoll's ready list is first in,
  first out), so events are served in order.
* **The running core takes the next event itself.** A core that finished its work takes the
  next queued event without waking anyone: no hand-off to a thread the OS has yet to run. With
  nothing queued it polls (if no core does), else it goes idle: it sleeps on a lock of its own,
  in a line, first in first out.
* **At most ``limit`` cores run** (take events, read, parse, write, park, poll). A poller
  that got events wakes the core idle longest while fewer than ``limit`` run. So cores take
  turns: every core, the main thread (core 0) included, serves part of the requests, as under
  uWSGI, which is what ``prove`` relies on; and a second core takes from the queue.
* **The application runs outside the count** (:meth:`pause`, :meth:`resume`): its call, the
  iteration of a body that is not a list, its iterable's ``close()``. When the last running
  core enters the application while events are queued or no core polls, it first wakes an idle
  core, so a request waiting on a database never keeps the worker from taking the next one.
  Otherwise a pause wakes nobody: a hello-world call lasts microseconds, and the core that
  runs on takes the queue. After the application a core runs again at once (it never waits
  to finish a request); above the limit, it goes idle when it is done instead of taking more.

What this replaces (0.3.1's ``Admission``): permits handed, in arrival order, from the core
leaving to a core waiting. That removed the tail where a worker had a CPU of its own, but on
shared CPUs a handed permit waited for the OS to run its thread (hello-world kept-alive p99
9.8-58.6 ms in four runs, at 15-30 % fewer requests/s). Here the work waits in the queue and
the core that is already running takes it: measured in server/README.md, Speed.

Which thread: every method may be called by any core of the worker (request threads, and core
0 on the main thread). Whether the calling thread counts as running is recorded per thread, so
:meth:`pause` is safe in code that may run outside a core's turn.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Protocol

Event = tuple[int, int]  # (fd, epoll mask), as epoll.poll gives it

BATCH = 16  # events one poll takes at most; the rest stay in the kernel for the next poll


class Poller(Protocol):
    """``select.epoll``'s ``poll``, as the relay uses it (tests pass a fake)."""

    def poll(self, timeout: float = ..., maxevents: int = ...) -> list[Event]: ...


class _Counted(threading.local):
    running = False  # the calling thread counts in Relay._running


class _Turn:
    """An idle core's place in line: a lock it sleeps on, held until the core is woken."""

    __slots__ = ("lock", "poll")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.poll = False  # woken to poll: the role is kept for it (_polling stays True)


class Relay:
    """Per worker (see the module docstring); created in the child, after the fork."""

    __slots__ = (
        "limit",
        "_epoll",
        "_lock",
        "_ready",
        "_running",
        "_polling",
        "_stopping",
        "_idle",
        "_counted",
    )

    def __init__(self, epoll: Poller, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a relay runs at least 1 core at once, not {limit}")
        self.limit = limit
        self._epoll = epoll
        # Guards every field below; never held across a call that blocks.
        self._lock = threading.Lock()
        self._ready: deque[Event] = deque()  # polled, not taken yet; empty while a core polls
        self._running = 0  # cores counted as running (the poller included)
        self._polling = False
        self._stopping = False
        self._idle: deque[_Turn] = deque()  # idle cores, oldest first
        self._counted = _Counted()

    # -- a core's loop -----------------------------------------------------------------------

    def start(self) -> None:
        """The calling core's loop begins: it counts as running (above the limit for a
        moment, if others already run: its first :meth:`next` makes it idle)."""
        with self._lock:
            self._running += 1
        self._counted.running = True

    def finish(self) -> None:
        """The calling core's loop ended (the worker stops)."""
        if self._counted.running:
            self._counted.running = False
            with self._lock:
                self._running -= 1

    def next(self, timeout: float) -> Event | None:
        """The calling core (running) is free: the next event for it, taken from the queue or
        polled; or None, when no event came within ``timeout`` or when the core went idle and
        was woken (it runs again: call again)."""
        with self._lock:
            within = self._running <= self.limit or self._stopping
            if within and self._ready:
                return self._ready.popleft()
            if within and not self._polling:
                self._polling = True
                turn = None
            elif self._stopping:
                return None  # another core polls; the caller's loop ends
            else:
                self._running -= 1
                self._counted.running = False
                turn = _Turn()
                self._idle.append(turn)
        if turn is None or self._sleep(turn, timeout):
            return self._poll(timeout)
        return None

    def stop(self) -> None:
        """The worker stops (any core): wake every idle core; from now on none goes idle."""
        with self._lock:
            self._stopping = True
            while self._idle:
                self._wake()

    # -- around the application's code (server.exchange) -------------------------------------

    def pause(self) -> bool:
        """Before the application's code: the calling core stops counting as running. If it
        was the last one running while events wait or no core polls, an idle core is woken to
        take them. True when the caller counted: it calls :meth:`resume` after that code,
        however it ends (``try``/``finally``)."""
        counted = self._counted
        if not counted.running:
            return False
        counted.running = False
        with self._lock:
            self._running -= 1
            if not self._running and self._idle and (self._ready or not self._polling):
                self._wake()
        return True

    def resume(self) -> None:
        """After the application's code: running again, at once (see :meth:`pause`)."""
        with self._lock:
            self._running += 1
        self._counted.running = True

    # -- tests -------------------------------------------------------------------------------

    def counts(self) -> tuple[int, int, int, bool]:
        """(cores running, events queued, cores idle, whether a core polls) now."""
        with self._lock:
            return self._running, len(self._ready), len(self._idle), self._polling

    # -- inside ------------------------------------------------------------------------------

    def _poll(self, timeout: float) -> Event | None:
        try:
            events = self._epoll.poll(timeout, BATCH)
        except BaseException:  # a signal's exception on core 0: let another core poll
            with self._lock:
                self._polling = False
            raise
        with self._lock:
            self._polling = False
            if not events:
                return None
            self._ready.extend(events[1:])
            if self._running < self.limit and self._idle:
                # The core idle longest runs too: with events queued, it takes from the
                # queue; with one event (a light load), it polls next, so cores take turns.
                self._wake(poll=not self._ready)
        return events[0]

    def _wake(self, poll: bool = False) -> None:
        """(lock held) Wake the core idle longest; it counts as running from here, and with
        ``poll`` it is the next poller (no other core polls meanwhile)."""
        self._running += 1
        turn = self._idle.popleft()
        if poll:
            self._polling = turn.poll = True
        turn.lock.release()

    def _sleep(self, turn: _Turn, timeout: float) -> bool:
        """Idle until woken (:meth:`_wake`) or ``timeout``; running again either way.
        True when woken to poll."""
        try:
            turn.lock.acquire(True, timeout)
        except BaseException:  # a signal's exception on core 0: back on its own
            with self._lock:
                if turn in self._idle:
                    self._idle.remove(turn)
                    self._running += 1
                elif turn.poll:
                    self._polling = False  # the role it was woken for: free for the next
            self._counted.running = True
            raise
        with self._lock:
            if turn in self._idle:  # timed out: back on its own
                self._idle.remove(turn)
                self._running += 1
        self._counted.running = True
        return turn.poll


class Unlimited(Relay):
    """``--protocol-cores 0``: every core waits in epoll for one event of its own, and none is
    counted (the server before 0.4)."""

    __slots__ = ()

    def __init__(self, epoll: Poller) -> None:
        super().__init__(epoll, 1)

    def start(self) -> None:
        pass

    def finish(self) -> None:
        pass

    def next(self, timeout: float) -> Event | None:
        events = self._epoll.poll(timeout, 1)
        return events[0] if events else None

    def stop(self) -> None:
        pass

    def pause(self) -> bool:
        return False

    def resume(self) -> None:
        pass
