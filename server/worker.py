"""A worker process: M cores, each a request loop; core 0 runs on the worker's main thread.

As uWSGI's ``uwsgi_loop_cores_run()`` does, the worker starts cores 1..M-1 as threads and runs
core 0 itself, on its main thread: the thread forked from the master, which still holds every
``threading.local`` value the master set while importing the app. So about one request in M runs
on the main thread, exactly as under uWSGI, and an app whose hand-written ``threading.local``
"fix" was touched at import time shows the same failure here as in production.

Which code runs where:

* ``Worker.__init__`` runs in the **master, before the fork**; it only stores references and
  touches nothing process-wide (gunicorn's rule).
* ``Worker.run`` runs in the **child, after the fork**, on its **main thread**: it installs the
  worker's signal handling, imports the app under ``--lazy-apps``, starts cores 1..M-1, reports
  ready to the master, then runs core 0 (``_core_loop(0)``), and finally drains.
* ``_core_loop`` runs on **every core**: the main thread (core 0) and the request threads
  (cores 1..M-1). Request threads block every signal (as uWSGI's cores do), so signals always
  land on the main thread; Python runs the (empty) handler there between bytecodes or on EINTR,
  and the C-level handler writes the signal number to the wakeup pipe at once, even while core 0
  is inside the application. The wakeup pipe is in the dispatcher's epoll set, so any free core
  reads it and sets the stop flag; a core busy with a request sees the flag when it finishes.
* Each core, between pieces of work, also sweeps expired parked connections and checks that
  the master is still its parent (within a ``TICK``).

Work comes from the worker's :class:`~server.dispatch.Dispatcher` (accept on the shared socket,
or a parked keep-alive connection that became readable); see :mod:`server.dispatch`.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import sys
import threading
import time

from . import app_loader, logs
from .config import TICK, WORKER_EXTRA_DRAIN, Config
from .connection import Connection
from .dispatch import WAKE, Dispatcher, Work
from .relay import Relay
from .scoreboard import Scoreboard
from .wsgi import WSGIApp, base_environ

log = logs.get()

# Exit statuses of a worker, read by the master.
WORKER_OK = 0  # stopped on request (signal, max-requests, master gone)
WORKER_BOOT_ERROR = 3  # could not start (app import failed under --lazy-apps)
WORKER_STOP_TIMEOUT = 4  # in-flight requests outlived --graceful-timeout

READY_MESSAGE = struct.Struct("=i")  # the worker's pid, written to the master's ready pipe

# Blocked by the master around fork(); the child unblocks them after installing its handlers.
FORK_BLOCKED_SIGNALS = frozenset(
    {
        signal.SIGTERM,
        signal.SIGQUIT,
        signal.SIGINT,
        signal.SIGHUP,
        signal.SIGTTIN,
        signal.SIGTTOU,
        signal.SIGCHLD,
        signal.SIGUSR1,
    }
)


class Worker:
    """One worker; built in the master, run in the forked child (see module docstring)."""

    def __init__(
        self,
        index: int,
        config: Config,
        listener: socket.socket,
        app: WSGIApp | None,
        ready_fd: int,
        max_requests: int,
    ) -> None:
        self.index = index
        self.config = config
        self.listener = listener
        self.app: WSGIApp = app if app is not None else _not_loaded
        self.ready_fd = ready_fd
        self.max_requests = max_requests
        self.scoreboard = Scoreboard(config.threads)
        self.base_environ = base_environ(config.host, listener.getsockname()[1])
        self.stopping = threading.Event()
        self.master_pid = os.getpid()
        self.pid = 0  # set in the master after the fork
        self.ready = False  # set in the master when the ready message arrives
        # Guards requests_served, incremented by every request thread.
        self._requests_lock = threading.Lock()
        self.requests_served = 0
        self._wake_r = self._wake_w = -1
        self._dispatcher: Dispatcher  # built in the child, in run()
        self.relay: Relay  # the dispatcher's, built in the child, in run()

    # -- child, main thread ----------------------------------------------------------------

    def run(self) -> int:
        """The child's life; returns its exit status (the caller passes it to ``os._exit``)."""
        self._init_signals()
        if self.config.lazy_apps:
            try:
                self.app = app_loader.load(self.config.app)
            except Exception:
                log.exception(
                    "worker %d (pid: %d) could not load the application", self.index, os.getpid()
                )
                return WORKER_BOOT_ERROR
        self._dispatcher = Dispatcher(
            self.listener,
            self._wake_r,
            self,
            self.config.max_connections,
            self.config.protocol_cores,
        )
        self.relay = self._dispatcher.relay
        threads = [
            threading.Thread(
                target=self._request_thread, args=(core,), name=f"core-{core}", daemon=True
            )
            for core in range(1, self.config.threads)
        ]
        for thread in threads:
            thread.start()
        os.write(self.ready_fd, READY_MESSAGE.pack(os.getpid()))
        self._core_loop(0)  # core 0: the main thread serves requests too, as in uWSGI.
        return self._drain(threads)

    def _init_signals(self) -> None:
        """Replace the master's handlers: TERM/QUIT stop gracefully, INT is the master's call."""
        for sig in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD, signal.SIGUSR1):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGQUIT):
            signal.signal(sig, _note_signal)  # no work in the handler: the wakeup fd carries it.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORK_BLOCKED_SIGNALS)

    def _read_wakeup(self) -> None:
        """The wakeup pipe is readable: act on the signals in it (any core)."""
        try:
            received = os.read(self._wake_r, 64)
        except BlockingIOError:
            return  # another core read it first.
        for signum in received:
            if signum in (signal.SIGTERM, signal.SIGQUIT):
                log.info(
                    "worker %d (pid: %d) stopping on %s",
                    self.index,
                    os.getpid(),
                    signal.Signals(signum).name,
                )
                self._stop()

    def _stop(self) -> None:
        """Set the stop flag and keep the wakeup pipe readable, so every free core wakes."""
        self.stopping.set()
        self.relay.stop()  # idle cores wake and see the flag
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: every core is being woken anyway.

    def _drain(self, threads: list[threading.Thread]) -> int:
        """Main thread, after core 0 stopped: let in-flight requests on the other cores finish
        within the graceful timeout (free cores notice the stop flag at once), then close the
        parked idle connections."""
        deadline = time.monotonic() + self.config.graceful_timeout + WORKER_EXTRA_DRAIN
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._serve_last_connections(min(deadline, time.monotonic() + self.config.header_timeout))
        busy = sum(thread.is_alive() for thread in threads)
        self._dispatcher.close_parked()
        if busy:
            log.warning(
                "worker %d (pid: %d): %d request(s) still running after the graceful timeout",
                self.index,
                os.getpid(),
                busy,
            )
            return WORKER_STOP_TIMEOUT
        return WORKER_OK

    def _serve_last_connections(self, deadline: float) -> None:
        """Main thread, stopping: accepted connections whose first request had not arrived
        when the cores stopped are still answered (with ``Connection: close``), until
        ``deadline``; idle kept-alive ones are closed."""
        dispatcher = self._dispatcher
        dispatcher.stop_accepting()
        while dispatcher.close_kept_alive() and (left := deadline - time.monotonic()) > 0:
            self._turn(min(left, TICK), 0)
            dispatcher.sweep()

    # -- child, every core (main thread = core 0, request threads = cores 1..M-1) ---------

    def _request_thread(self, core: int) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        self._core_loop(core)

    def _core_loop(self, core: int) -> None:
        """One core's request loop: take the next piece of work, serve it, until stopping."""
        dispatcher, stopping, relay = self._dispatcher, self.stopping, self.relay
        relay.start()
        while not stopping.is_set():
            try:
                work = self._turn(TICK, core)
            except Exception:  # a bug of ours on one event must not take the core down.
                log.exception("internal error in the dispatcher (core %d)", core)
                continue
            if work is WAKE:
                self._read_wakeup()
            dispatcher.sweep()
            if core == 0 or work is None:
                self._check_master()
        if core:
            relay.finish()  # (core 0 still runs: it drains, server/worker.py _drain)

    def _turn(self, timeout: float, core: int) -> Work:
        """Get the next event (``timeout`` at most; :mod:`server.relay`), handle it and serve
        the request it completed. What the event gave: a connection (served by now), ``WAKE``
        or None."""
        dispatcher = self._dispatcher
        event = dispatcher.wait(timeout)
        if event is None:
            return None
        work = dispatcher.take(event, core)
        if isinstance(work, Connection):
            self._serve(work, core)
        return work

    def _serve(self, conn: Connection, core: int) -> None:
        """Answer the requests ``conn`` has in (a core), then give it back to the dispatcher;
        an idle kept-alive connection is closed instead when the worker is stopping."""
        try:
            step = conn.serve(core)
            if self.stopping.is_set() and conn.idle:
                conn.close()  # idle kept-alive while stopping: done with it
            else:
                self._dispatcher.settle(conn, step)
        except Exception:  # a bug of ours on one connection must not take the core down.
            log.exception("internal error while serving %s", conn.remote[0])
            conn.close()

    def _check_master(self) -> None:
        if not self.stopping.is_set() and os.getppid() != self.master_pid:
            log.warning(
                "worker %d (pid: %d): the master is gone; stopping", self.index, os.getpid()
            )
            self._stop()

    def request_started(self) -> None:
        """Count a request; at ``--max-requests`` start a graceful recycle (request thread).

        Counted when the request starts, so its own response already carries
        ``Connection: close``."""
        if not self.max_requests:
            return
        with self._requests_lock:
            self.requests_served += 1
            served = self.requests_served
        if served == self.max_requests:
            log.info(
                "worker %d (pid: %d) served %d requests; recycling", self.index, os.getpid(), served
            )
            self._stop()


def _note_signal(signum: int, frame: object) -> None:
    """Handler for the signals the worker acts on: empty, the wakeup fd delivers the number."""


def _not_loaded(environ: dict[str, object], start_response: object) -> list[bytes]:
    raise RuntimeError("the application was not loaded in this worker")


def child_main(worker: Worker) -> None:
    """Run ``worker`` in the freshly forked child and leave the process without returning."""
    status = WORKER_BOOT_ERROR
    try:
        status = worker.run()
    except BaseException:
        log.exception("worker %d (pid: %d) crashed", worker.index, os.getpid())
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
