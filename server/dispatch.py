"""The worker's dispatcher: one epoll set that moves every connection's bytes until a request
is whole, then hands it to a free core.

One :class:`Dispatcher` per worker, created in the child after the fork. There is no
dispatcher thread: a free core (request thread, or core 0 on the main thread) gets its next
event from the worker's :class:`~server.relay.Relay` (:meth:`Dispatcher.wait`: one core polls
the epoll set at a time, a running core takes the next event itself, at most
``--protocol-cores`` run), then handles it without blocking (:meth:`Dispatcher.take`:
:meth:`~server.connection.Connection.on_readable`, ``on_writable``). That gives its core
only a connection whose request is complete (head and body), ``WAKE`` or None;
so a core runs an application or waits in epoll, and never waits on a client while others are
queued. The set holds:

* the listening socket, with ``EPOLLONESHOT``: exactly one core of this worker takes each
  of its events; it ``accept()``s (the other worker may have taken it first:
  ``BlockingIOError``, nothing to do), re-arms the listener at once, and reads the new
  connection right away (the request is usually there already).
  Cores still accept on the shared socket, as uWSGI's do; the kernel picks which worker.
* every connection not held by a core (*parked*): reading a request, idle between requests,
  finishing a response to a slow reader, or lingering after a refusal; each with
  ``EPOLLONESHOT`` so one core takes it. Whoever pops it from ``_parked`` owns it.
* the wakeup pipe, level-triggered, so every free core sees it (``WAKE``): a signal's number
  from ``signal.set_wakeup_fd``, or a byte written by the worker to stop.

**Deadlines**: whichever core passes :meth:`sweep` first after a ``TICK`` expires the parked
connections past their deadline (:meth:`Connection.expire`: 408 for a head or body too slow,
a quiet close for an idle one).

**Connection cap** (``--max-connections`` per worker): at the cap, a new connection makes the
oldest idle kept-alive connection close; if none is idle, the listener is left unarmed until
a connection closes or becomes idle (new clients wait in the kernel's backlog, or go to
another worker).
``accept()`` errors the worker cannot fix (EMFILE, ENFILE, ENOBUFS, ENOMEM) close the oldest
idle connection if there is one, else pause accepting for a ``TICK``; they are logged at most
every ``ACCEPT_ERROR_LOG_INTERVAL`` seconds, with a count. No retry loop.

When the worker stops, the main thread (after the other cores left) takes the listener and the
wakeup pipe out of the set, closes the idle kept-alive connections, and still serves the
fresh ones, whose first request may be on its way (a client that connected is owed an answer).
"""

from __future__ import annotations

import errno
import select
import socket
import threading
import time
from typing import Literal

from . import logs
from .budget import BodyBudget
from .config import ACCEPT_ERROR_LOG_INTERVAL, TICK
from .connection import CLOSED, READY, Connection, Step, WorkerView
from .relay import Event, Relay, Unlimited

log = logs.get()

WAKE: Literal["wake"] = "wake"
Work = Connection | Literal["wake"] | None
_ONESHOT = select.EPOLLIN | select.EPOLLONESHOT
_ACCEPT_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class Dispatcher:
    """Per worker; every method may be called from any core of the worker."""

    def __init__(
        self,
        listener: socket.socket,
        wake_fd: int,
        worker: WorkerView,
        max_connections: int,
        protocol_cores: int = 0,
    ) -> None:
        self._listener = listener
        self._listen_fd = listener.fileno()
        self._wake_fd = wake_fd
        self._worker = worker
        self.max_connections = max_connections
        self.budget = BodyBudget(worker.config.max_body_buffer)  # (server.budget)
        self._epoll = select.epoll()
        self.relay: Relay = (
            Relay(self._epoll, protocol_cores) if protocol_cores else Unlimited(self._epoll)
        )
        self._epoll.register(self._listen_fd, _ONESHOT)
        self._epoll.register(wake_fd, select.EPOLLIN)
        # Guards _parked (fd -> connection), each connection's ``registering`` count, _open,
        # _listener_armed, _accepting, _next_sweep, _resume_at and the accept-error counters.
        # Never held across a system call that releases the GIL.
        self._lock = threading.Lock()
        self._parked: dict[int, Connection] = {}
        self._open = 0  # connections accepted and not closed (parked or held by a core)
        self._listener_armed = True  # in the set, waiting for a connection
        self._accepting = True  # False once the worker stops
        self._resume_at = 0.0  # accepting paused after an accept() error until then
        self._next_sweep = time.monotonic() + TICK
        self._accept_errors = 0
        self._accept_error_logged = 0.0

    # -- what a free core calls ------------------------------------------------------------------

    def wait(self, timeout: float = TICK) -> Event | Connection | None:
        """The calling core's next event (:meth:`Relay.next <server.relay.Relay.next>`:
        queued, or polled within ``timeout``), or None. A listener's event is accepted here at
        once, so the listener is re-armed for the next connection, and the new connection
        (not read yet) is returned."""
        event = self.relay.next(timeout)
        if event is None:
            return None
        if event[0] == self._listen_fd:
            return self._accept()
        return event

    def take(self, event: Event | Connection, slot: int = 0) -> Work:
        """Handle what :meth:`wait` gave without blocking (the calling core is running):
        a connection with a whole request, ``WAKE``, or None (an event that needed no core).
        A response body continued here runs in ``slot``'s scoreboard slot."""
        if isinstance(event, Connection):  # accepted in wait(): its first bytes
            return self._after(event, event.on_readable(time.monotonic()))
        fd, mask = event
        if fd == self._wake_fd:
            return WAKE
        with self._lock:
            conn = self._parked.pop(fd, None)
        if conn is None:
            return None  # swept or evicted just before
        now = time.monotonic()
        if mask & select.EPOLLOUT or conn.mode == "write":
            # (an error or hang-up on a connection sending a response: never read it then,
            # or a next request could overtake the response still going out)
            step = conn.on_writable(now, slot)
        else:
            step = conn.on_readable(now)
        return self._after(conn, step)

    def park(self, conn: Connection) -> None:
        """Watch a connection not held by a core until it can move or its deadline passes."""
        fd = conn.fileno()
        events = conn.events | select.EPOLLONESHOT
        # In _parked before epoll watches it, so its event finds it. Marked ``registering``
        # until epoll_ctl returns, so no sweep or eviction closes it in between (its fd could
        # be reused by a new connection, whose registration we would then change). epoll_ctl
        # itself runs outside the lock: it releases the GIL, and a lock held across it makes
        # every core that takes an event wait for this one (measured: server/README, Speed).
        with self._lock:
            self._parked[fd] = conn
            conn.registering += 1
            unarmed = not self._listener_armed
        try:
            if conn.polled:
                self._epoll.modify(fd, events)
            else:
                conn.polled = True
                self._epoll.register(fd, events)
        finally:
            with self._lock:
                conn.registering -= 1
        if unarmed and conn.idle:
            self._maybe_arm_listener()  # at the cap, an idle connection can make room

    def settle(self, conn: Connection, step: Step) -> None:
        """After a core served ``conn`` (and every request it had in): park it, unless it
        closed. Back in line behind the connections already waiting: fairness."""
        if step != CLOSED:
            self.park(conn)

    def sweep(self) -> None:
        """Expire parked connections past their deadline (at most once per TICK, any core);
        re-arm the listener after an accept() pause."""
        now = time.monotonic()
        if now < self._next_sweep:
            return
        with self._lock:
            if now < self._next_sweep:
                return
            self._next_sweep = now + TICK
            expired = [
                fd
                for fd, conn in self._parked.items()
                if conn.deadline <= now and not conn.registering
            ]
            expiring = [self._parked.pop(fd) for fd in expired]
        for conn in expiring:
            if conn.expire() != CLOSED:
                self.park(conn)  # a 408 still going out, or lingering after it
        self._maybe_arm_listener()

    # -- accepting ---------------------------------------------------------------------------------

    def _accept(self) -> Connection | None:
        """Accept one connection (the listener's event is ours: it is re-armed here). Over
        the cap, the oldest idle connection makes room: one out for one in, decided after
        the accept, so two cores woken together never close two for one."""
        with self._lock:
            self._listener_armed = False
            if not self._accepting:
                return None  # an event queued before the worker stopped accepting
        try:
            sock, remote = self._listener.accept()
        except BlockingIOError:
            self._maybe_arm_listener()
            return None  # another worker accepted it first.
        except OSError as exc:
            self._accept_failed(exc)
            return None
        with self._lock:
            self._open += 1
            over = self._open > self.max_connections
        if over:
            self._evict_oldest_idle()  # none idle: over by one until a connection closes
        self._maybe_arm_listener()  # at once: the next connection wakes the next free core
        try:
            conn = Connection(sock, remote[:2], self._worker, self._closed, self.budget)
        except OSError:
            sock.close()  # reset before we could set it up
            self._closed(None)
            return None
        return conn

    def _accept_failed(self, exc: OSError) -> None:
        if exc.errno not in _ACCEPT_RESOURCE_ERRORS:
            self._maybe_arm_listener()  # ECONNABORTED and the like: that client is gone
            return
        if self._evict_oldest_idle():
            self._maybe_arm_listener()
            return
        now = time.monotonic()
        with self._lock:
            self._resume_at = now + TICK  # sweep re-arms the listener after it
            self._accept_errors += 1
            due = now - self._accept_error_logged >= ACCEPT_ERROR_LOG_INTERVAL
            if due:
                count, self._accept_errors = self._accept_errors, 0
                self._accept_error_logged = now
        if due:
            log.warning(
                "accept() failed: %s (%d time(s) in the last %.0f s); not accepting for %.0f s "
                "at a time (%d connections open in this worker)",
                exc.strerror or exc,
                count,
                ACCEPT_ERROR_LOG_INTERVAL,
                TICK,
                self._open,
            )

    def _evict_oldest_idle(self) -> bool:
        """Close the parked idle kept-alive connection that has been idle longest, if any."""
        with self._lock:
            idle = [conn for conn in self._parked.values() if conn.idle and not conn.registering]
            if not idle:
                return False
            oldest = min(idle, key=lambda conn: conn.idle_since)
            del self._parked[oldest.fileno()]
        oldest.close()
        return True

    def _closed(self, conn: Connection | None) -> None:
        """A connection closed (any thread): one slot free, the listener may accept again."""
        with self._lock:
            self._open -= 1
            armed = self._listener_armed
        if not armed:
            self._maybe_arm_listener()

    def _maybe_arm_listener(self) -> None:
        with self._lock:
            if (
                self._listener_armed
                or not self._accepting
                or time.monotonic() < self._resume_at
                or (
                    self._open >= self.max_connections
                    and not any(conn.idle for conn in self._parked.values())
                )
            ):
                return
            self._listener_armed = True
        try:
            self._epoll.modify(self._listen_fd, _ONESHOT)
        except (FileNotFoundError, OSError):
            pass  # out of the set: the worker is stopping

    def _after(self, conn: Connection, step: Step) -> Work:
        """What a core gets after an event moved ``conn``: the connection if its request is
        whole; else None, and the connection is parked again unless it closed."""
        if step == READY:
            return conn
        if step != CLOSED:
            self.park(conn)
        return None

    # -- stopping (main thread) --------------------------------------------------------------

    def stop_accepting(self) -> None:
        """Take the listener and the wakeup pipe out of the set (main thread, draining): from
        here on :meth:`wait` only finds parked connections."""
        with self._lock:
            self._accepting = False
        for fd in (self._listen_fd, self._wake_fd):
            try:
                self._epoll.unregister(fd)
            except (FileNotFoundError, OSError):
                pass  # already out of the set

    def close_kept_alive(self) -> int:
        """Close the parked idle kept-alive connections (the worker is stopping); keep those
        still owed an answer (a request on its way, a response going out). How many remain."""
        with self._lock:
            closing = [
                fd for fd, conn in self._parked.items() if conn.idle and not conn.registering
            ]
            closed = [self._parked.pop(fd) for fd in closing]
            remaining = len(self._parked)
        for conn in closed:
            conn.close()
        return remaining

    def parked_count(self) -> int:
        with self._lock:
            return len(self._parked)

    def open_count(self) -> int:
        with self._lock:
            return self._open

    def close_parked(self) -> int:
        """Close every parked connection (the worker is stopping); how many there were."""
        with self._lock:
            closing = list(self._parked.values())
            self._parked.clear()
        for conn in closing:
            conn.close()
        return len(closing)

    def close(self) -> None:
        self._epoll.close()
