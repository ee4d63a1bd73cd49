"""A worker process: M request threads accept()ing on the shared socket; the main thread
handles signals and supervision.

Which code runs where:

* ``Worker.__init__`` runs in the **master, before the fork**; it only stores references and
  touches nothing process-wide (gunicorn's rule).
* ``Worker.run`` runs in the **child, after the fork**, on its main thread: it installs the
  worker's signal handling, imports the app under ``--lazy-apps``, starts the request threads,
  reports ready to the master, then waits for a reason to stop (a signal, ``--max-requests``
  reached, the master gone) and drains.
* ``_accept_loop`` and everything under it run in **request threads**, which block every signal
  (as uWSGI's cores do), so signals always land on the main thread.

The listening socket is blocking with ``SO_RCVTIMEO`` set, so an idle ``accept()`` returns every
``TICK`` to look at the stop flag while the kernel still wakes exactly one waiting thread per
connection (no thundering herd, which a Python-level timeout would cause).
"""

from __future__ import annotations

import errno
import os
import select
import signal
import socket
import struct
import sys
import threading

from . import app_loader, logs
from .config import WORKER_EXTRA_DRAIN, Config
from .connection import Connection
from .scoreboard import Scoreboard
from .wsgi import WSGIApp, base_environ

log = logs.get()

# Exit statuses of a worker, read by the master.
WORKER_OK = 0            # stopped on request (signal, max-requests, master gone)
WORKER_BOOT_ERROR = 3    # could not start (app import failed under --lazy-apps)
WORKER_STOP_TIMEOUT = 4  # in-flight requests outlived --graceful-timeout

READY_MESSAGE = struct.Struct("=i")  # the worker's pid, written to the master's ready pipe
_TCPI_UNACKED = struct.Struct("=I")  # tcp_info.tcpi_unacked: a listener's accept-queue length

# Blocked by the master around fork(); the child unblocks them after installing its handlers.
FORK_BLOCKED_SIGNALS = frozenset({
    signal.SIGTERM, signal.SIGQUIT, signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU,
    signal.SIGCHLD, signal.SIGUSR1,
})

_TRANSIENT_ACCEPT_ERRORS = {errno.ECONNABORTED, errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class Worker:
    """One worker; built in the master, run in the forked child (see module docstring)."""

    def __init__(
        self, index: int, config: Config, listener: socket.socket, app: WSGIApp | None,
        ready_fd: int, max_requests: int,
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

    # -- child, main thread ----------------------------------------------------------------

    def run(self) -> int:
        """The child's life; returns its exit status (the caller passes it to ``os._exit``)."""
        self._init_signals()
        if self.config.lazy_apps:
            try:
                self.app = app_loader.load(self.config.app)
            except Exception:
                log.exception("worker %d (pid: %d) could not load the application", self.index, os.getpid())
                return WORKER_BOOT_ERROR
        threads = [
            threading.Thread(target=self._accept_loop, args=(slot,), name=f"request-{slot}", daemon=True)
            for slot in range(self.config.threads)
        ]
        for thread in threads:
            thread.start()
        os.write(self.ready_fd, READY_MESSAGE.pack(os.getpid()))
        while not self.stopping.is_set():
            self._wait_for_signal(timeout=1.0)
            if os.getppid() != self.master_pid:
                log.warning("worker %d (pid: %d): the master is gone; stopping", self.index, os.getpid())
                self.stopping.set()
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

    def _wait_for_signal(self, timeout: float) -> None:
        readable, _, _ = select.select([self._wake_r], [], [], timeout)
        if not readable:
            return
        try:
            received = os.read(self._wake_r, 64)
        except BlockingIOError:
            return
        for signum in received:
            if signum in (signal.SIGTERM, signal.SIGQUIT):
                log.info("worker %d (pid: %d) stopping on %s", self.index, os.getpid(), signal.Signals(signum).name)
                self.stopping.set()

    def _drain(self, threads: list[threading.Thread]) -> int:
        """Let in-flight requests finish within the graceful timeout; threads in accept()
        notice the stop flag within one tick."""
        deadline = self.config.graceful_timeout + WORKER_EXTRA_DRAIN
        for thread in threads:
            thread.join(max(0.0, deadline))
        busy = sum(thread.is_alive() for thread in threads)
        if busy:
            log.warning("worker %d (pid: %d): %d request(s) still running after the graceful timeout",
                        self.index, os.getpid(), busy)
            return WORKER_STOP_TIMEOUT
        return WORKER_OK

    # -- child, request threads -----------------------------------------------------------

    def _accept_loop(self, slot: int) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        listener, stopping = self.listener, self.stopping
        while not stopping.is_set():
            try:
                sock, remote = listener.accept()
            except (BlockingIOError, InterruptedError):
                continue  # SO_RCVTIMEO tick: look at the stop flag again.
            except OSError as exc:
                if exc.errno not in _TRANSIENT_ACCEPT_ERRORS:
                    raise
                log.warning("accept() failed: %s; backing off", exc)
                stopping.wait(0.5)
                continue
            try:
                Connection(sock, remote[:2], self, slot).serve()
            except Exception:  # a bug of ours on one connection must not take the thread down.
                log.exception("internal error while serving %s", remote[0])

    def clients_waiting(self) -> bool:
        """True if connections wait in the listening socket's accept queue (any thread).

        Linux reports a listener's queue length in ``tcp_info.tcpi_unacked``. A waiting
        connection means every request thread of every worker is busy; the connection loop
        then stops holding idle keep-alive connections (see :mod:`server.connection`).
        """
        try:
            info = self.listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 32)
        except OSError:
            return False
        return len(info) >= 28 and _TCPI_UNACKED.unpack_from(info, 24)[0] > 0

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
            log.info("worker %d (pid: %d) served %d requests; recycling", self.index, os.getpid(), served)
            self.stopping.set()
            try:
                os.write(self._wake_w, b"\0")
            except BlockingIOError:
                pass  # the pipe is full: the main thread is being woken anyway.


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
