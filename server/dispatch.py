"""The worker's dispatcher: one epoll set that hands each free core its next piece of work.

One :class:`Dispatcher` per worker, created in the child after the fork. Every core (request
thread, and core 0 on the main thread) calls :meth:`Dispatcher.next` when it is free and gets
one of:

* a new connection: the listening socket is in the set with ``EPOLLONESHOT``, so exactly one
  free core of this worker is woken per incoming connection; it ``accept()``s (the other worker
  may have taken it first: ``BlockingIOError``, nothing to do) and re-arms the listener at once,
  so the next connection wakes the next free core while this one serves. Cores still accept on
  the shared socket, as uWSGI's do; the kernel picks which worker.
* a parked connection that became readable: a kept-alive connection between requests is
  *parked* here (``EPOLLONESHOT`` too, so one core takes it) instead of holding a thread while
  it is idle. Whoever pops it from ``_parked`` owns it; a parked connection is owned by the
  dispatcher, a served one by exactly one core.
* ``WAKE``: the wakeup pipe is readable (a signal's number from ``signal.set_wakeup_fd``, or a
  byte written by :meth:`wake`). It stays in the set level-triggered, so every free core sees
  it; the worker reads it and sets its stop flag.
* None: the wait timed out (``TICK``); the core looks at its stop flag and the master.

Idle deadlines are swept by whichever core passes :meth:`sweep` first after a ``TICK``: a parked
connection past its idle limit (keep-alive timeout, or header timeout before the first request)
is closed quietly.

When the worker stops, the main thread (after the other cores left) takes the listener and the
wakeup pipe out of the set, closes the idle kept-alive connections, and still serves the fresh
ones, whose first request may be on its way (a client that connected is owed an answer).
"""

from __future__ import annotations

import select
import socket
import threading
import time
from typing import Literal

from . import logs
from .config import TICK
from .connection import Connection

log = logs.get()

WAKE: Literal["wake"] = "wake"
_ONESHOT = select.EPOLLIN | select.EPOLLONESHOT


class Dispatcher:
    """Per worker; every method may be called from any core of the worker."""

    def __init__(self, listener: socket.socket, wake_fd: int) -> None:
        self._listener = listener
        self._listen_fd = listener.fileno()
        self._wake_fd = wake_fd
        self._epoll = select.epoll()
        self._epoll.register(self._listen_fd, _ONESHOT)
        self._epoll.register(wake_fd, select.EPOLLIN)
        # Guards _parked (fd -> (connection, idle deadline)) and _next_sweep.
        self._parked_lock = threading.Lock()
        self._parked: dict[int, tuple[Connection, float]] = {}
        self._next_sweep = time.monotonic() + TICK

    def next(
        self, timeout: float = TICK
    ) -> tuple[socket.socket, tuple[str, int]] | Connection | Literal["wake"] | None:
        """Block (``timeout`` at most) until there is work for the calling core."""
        events = self._epoll.poll(timeout, 1)
        if not events:
            return None
        fd = events[0][0]
        if fd == self._listen_fd:
            try:
                sock, remote = self._listener.accept()
            except BlockingIOError:
                return None  # another worker accepted it first.
            finally:
                self._epoll.modify(self._listen_fd, _ONESHOT)
            return sock, remote[:2]
        if fd == self._wake_fd:
            return WAKE
        with self._parked_lock:
            parked = self._parked.pop(fd, None)
        return parked[0] if parked is not None else None  # None: swept just before

    def park(self, conn: Connection) -> None:
        """Watch an idle connection until it is readable or its idle limit passes."""
        fd = conn.fileno()
        with self._parked_lock:
            self._parked[fd] = (conn, time.monotonic() + conn.idle_limit)
        if conn.polled:
            self._epoll.modify(fd, _ONESHOT)
        else:
            conn.polled = True
            self._epoll.register(fd, _ONESHOT)

    def sweep(self) -> None:
        """Close parked connections past their idle limit (at most once per TICK, any core)."""
        now = time.monotonic()
        if now < self._next_sweep:
            return
        with self._parked_lock:
            if now < self._next_sweep:
                return
            self._next_sweep = now + TICK
            expired = [fd for fd, (_, deadline) in self._parked.items() if deadline <= now]
            closing = [self._parked.pop(fd)[0] for fd in expired]
        for conn in closing:
            conn.close()

    def stop_accepting(self) -> None:
        """Take the listener and the wakeup pipe out of the set (main thread, draining): from
        here on :meth:`next` only hands out parked connections."""
        for fd in (self._listen_fd, self._wake_fd):
            try:
                self._epoll.unregister(fd)
            except (FileNotFoundError, OSError):
                pass  # already out of the set

    def close_kept_alive(self) -> int:
        """Close the parked connections that made a request (idle keep-alive: the worker is
        stopping); keep those whose first request has not arrived yet. How many remain."""
        with self._parked_lock:
            closing = [fd for fd, (conn, _) in self._parked.items() if conn.served]
            closed = [self._parked.pop(fd)[0] for fd in closing]
            remaining = len(self._parked)
        for conn in closed:
            conn.close()
        return remaining

    def parked_count(self) -> int:
        with self._parked_lock:
            return len(self._parked)

    def close_parked(self) -> int:
        """Close every parked connection (the worker is stopping); how many there were."""
        with self._parked_lock:
            closing = [conn for conn, _ in self._parked.values()]
            self._parked.clear()
        for conn in closing:
            conn.close()
        return len(closing)

    def close(self) -> None:
        self._epoll.close()
