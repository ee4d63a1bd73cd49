"""The master process (gunicorn's arbiter, uWSGI's master): binds, imports, forks, supervises.

Everything here runs in the **master process, on its only thread** (the master never starts a
thread, so ``fork()`` from it is safe). Signal handlers only queue the signal number; the main
loop wakes (``signal.set_wakeup_fd`` + ``select``) and dispatches to ``handle_<name>`` methods:

* TERM, INT: graceful stop: close the listening socket, TERM the workers, wait up to
  ``--graceful-timeout``, then KILL what is left.
* QUIT: immediate stop (KILL the workers).
* HUP: graceful reload: spawn a new set of workers (with ``--lazy-apps`` they import the app
  afresh), then retire the old ones once the new ones are ready.
* TTIN / TTOU: one worker more / less.
* CHLD: reap; a worker that died is respawned, unless workers keep dying before they report
  ready (a crashing app must not fork-bomb): after ``BOOT_FAILURE_LIMIT`` such deaths in a row
  the master stops with :data:`EXIT_BOOT_FAILED`.

Across the fork a worker inherits the listening socket, the imported application (unless lazy),
the write end of the ready pipe and its own :class:`~server.scoreboard.Scoreboard`; it drops the
rest (see :mod:`server.worker`).
"""

from __future__ import annotations

import errno
import os
import random
import select
import signal
import socket
import time

from . import app_loader, logs
from .config import MASTER_TICK, Config
from .errors import AppLoadError
from .worker import FORK_BLOCKED_SIGNALS, READY_MESSAGE, WORKER_BOOT_ERROR, Worker, child_main
from .wsgi import WSGIApp

log = logs.get()

# Exit statuses of the master.
EXIT_OK = 0
EXIT_CONFIG = 2  # refused settings (raised by server.config before anything starts)
EXIT_BOOT_FAILED = 3  # workers kept dying before they were ready
EXIT_APP_LOAD = 4  # the application could not be imported in the master
EXIT_BIND = 5  # the listening socket could not be created

BOOT_FAILURE_LIMIT = 3
_SIGNALS = ("TERM", "INT", "QUIT", "HUP", "TTIN", "TTOU", "CHLD")
_SIGNAL_QUEUE_MAX = 16


def create_listener(config: Config) -> socket.socket:
    """The listening socket every worker accept()s on: non-blocking, each worker's cores wait
    for it in their dispatcher's epoll set (one core woken per connection per worker)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        config.host, config.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(config.backlog)
        sock.setblocking(False)  # cores wait in epoll (server.dispatch); accept() never blocks
    except BaseException:
        sock.close()
        raise
    return sock


class Master:
    """Supervises the workers; see the module docstring for the signals it handles."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.target = config.workers
        self.app: WSGIApp | None = None
        self.listener: socket.socket | None = None
        self.workers: dict[int, Worker] = {}
        self.retiring: set[int] = set()  # pids told to stop (reload, TTOU, harakiri)
        self.reload_old: set[int] = set()  # pids to retire once their replacements are ready
        self.stopping = False
        self.stop_deadline = 0.0
        self.exit_status = EXIT_OK
        self.boot_failures = 0
        self.next_spawn_at = 0.0
        self.announced_ready = False
        self._signal_queue: list[int] = []
        self._wake_r = self._wake_w = self._ready_r = self._ready_w = -1

    # -- startup -----------------------------------------------------------------------------

    def run(self) -> int:
        """The master's life; returns its exit status."""
        config = self.config
        try:
            self.listener = create_listener(config)
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", config.host, config.port, exc.strerror or exc)
            return EXIT_BIND
        host, port = self.listener.getsockname()[:2]
        log.info(logs.LISTENING.format(host=host, port=port, pid=os.getpid()))
        if not config.lazy_apps:
            try:
                self.app = app_loader.load(config.app)
            except AppLoadError as exc:
                log.error("cannot load the application: %s", exc)
                return EXIT_APP_LOAD
            except Exception:
                log.exception("cannot load the application %s", config.app)
                return EXIT_APP_LOAD
        self._ready_r, self._ready_w = os.pipe()
        os.set_blocking(self._ready_r, False)
        self._init_signals()
        try:
            self._manage_workers()
            return self._loop()
        finally:
            for worker in self.workers.values():
                _kill(worker.pid, signal.SIGKILL)
            self.listener.close()

    def _init_signals(self) -> None:
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for name in _SIGNALS:
            signal.signal(getattr(signal, "SIG" + name), self._queue_signal)

    def _queue_signal(self, signum: int, frame: object) -> None:
        """The only thing a handler does: remember the signal for the loop."""
        if len(self._signal_queue) < _SIGNAL_QUEUE_MAX:
            self._signal_queue.append(signum)

    # -- the loop ----------------------------------------------------------------------------

    def _loop(self) -> int:
        while True:
            self._wait(MASTER_TICK)
            while self._signal_queue:
                signum = self._signal_queue.pop(0)
                getattr(self, "handle_" + signal.Signals(signum).name[3:].lower())()
            self._read_ready()
            self._reap()
            if self.stopping:
                if not self.workers:
                    log.info("master (pid: %d) stopped", os.getpid())
                    return self.exit_status
                if time.monotonic() >= self.stop_deadline:
                    for pid in self.workers:
                        log.warning(
                            "worker %d (pid: %d) outlived the graceful timeout; killing it",
                            self.workers[pid].index,
                            pid,
                        )
                        _kill(pid, signal.SIGKILL)
                    self.stop_deadline = float("inf")
                continue
            self._check_harakiri()
            self._manage_workers()

    def _wait(self, timeout: float) -> None:
        try:
            readable, _, _ = select.select([self._wake_r, self._ready_r], [], [], timeout)
        except InterruptedError:
            return
        if self._wake_r in readable:
            _drain(self._wake_r)

    def _read_ready(self) -> None:
        try:
            data = os.read(self._ready_r, READY_MESSAGE.size * 64)
        except BlockingIOError:
            return
        for offset in range(0, len(data) - READY_MESSAGE.size + 1, READY_MESSAGE.size):
            (pid,) = READY_MESSAGE.unpack_from(data, offset)
            worker = self.workers.get(pid)
            if worker is None:
                continue
            worker.ready = True
            self.boot_failures = 0
            log.info(logs.WORKER_READY.format(index=worker.index, pid=pid))
        active = self._active()
        if sum(w.ready for w in active) >= self.target:
            if not self.announced_ready:
                self.announced_ready = True
                log.info(logs.ALL_READY.format(count=len(active)))
            if self.reload_old:
                self._retire(self.reload_old)
                self.reload_old = set()
                log.info("reload complete: %d new workers", len(active))

    def _active(self) -> list[Worker]:
        """Workers that count towards the target (not told to stop, not awaiting retirement)."""
        return [
            w
            for pid, w in self.workers.items()
            if pid not in self.retiring and pid not in self.reload_old
        ]

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            self.retiring.discard(pid)
            self.reload_old.discard(pid)
            worker.scoreboard.close()
            if os.WIFSIGNALED(status):
                how = f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
            else:
                how = f"exited with status {os.waitstatus_to_exitcode(status)}"
            log.info(logs.WORKER_EXITED.format(index=worker.index, pid=pid, how=how))
            if not worker.ready and not self.stopping:
                self._boot_failed(
                    worker,
                    how,
                    os.WIFEXITED(status) and os.WEXITSTATUS(status) == WORKER_BOOT_ERROR,
                )

    def _boot_failed(self, worker: Worker, how: str, boot_error: bool) -> None:
        self.boot_failures += 1
        if self.boot_failures >= BOOT_FAILURE_LIMIT:
            log.error(
                "worker %d died before it was ready %d times in a row (last: %s%s); "
                "stopping the server rather than respawning it forever",
                worker.index,
                self.boot_failures,
                how,
                ", could not load the app" if boot_error else "",
            )
            self.exit_status = EXIT_BOOT_FAILED
            self._begin_stop()
            return
        self.next_spawn_at = time.monotonic() + min(2.0, 0.25 * 2**self.boot_failures)

    def _manage_workers(self) -> None:
        active = self._active()
        if len(active) < self.target and time.monotonic() >= self.next_spawn_at:
            used = {w.index for w in active}
            for _ in range(self.target - len(active)):
                index = next(i for i in range(1, len(used) + 2) if i not in used)
                used.add(index)
                self._spawn(index)
        elif len(active) > self.target:
            extra = sorted(active, key=lambda w: w.index)[self.target :]
            self._retire({w.pid for w in extra})

    def _spawn(self, index: int) -> None:
        config = self.config
        assert self.listener is not None
        limit = config.max_requests + (
            random.randint(0, config.max_requests_jitter) if config.max_requests else 0
        )
        worker = Worker(index, config, self.listener, self.app, self._ready_w, limit)
        # Signals stay blocked across the fork: one sent to the new worker before it installed
        # its own handlers waits for them instead of landing in the master's handler copy.
        signal.pthread_sigmask(signal.SIG_BLOCK, FORK_BLOCKED_SIGNALS)
        pid = os.fork()
        if pid == 0:  # the child: leave the master's fds and signal plumbing behind.
            signal.set_wakeup_fd(-1)
            for fd in (self._wake_r, self._wake_w, self._ready_r):
                os.close(fd)
            child_main(worker)  # unblocks them once the worker's handlers are in place
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORK_BLOCKED_SIGNALS)
        worker.pid = pid
        self.workers[pid] = worker
        log.info(logs.SPAWNED.format(index=index, pid=pid, threads=config.threads))

    def _retire(self, pids: set[int]) -> None:
        for pid in pids:
            if pid in self.workers:
                self.retiring.add(pid)
                _kill(pid, signal.SIGTERM)

    def _check_harakiri(self) -> None:
        limit = self.config.harakiri
        if not limit:
            return
        for pid, worker in list(self.workers.items()):
            for slot, elapsed, label in worker.scoreboard.overdue(limit):
                log.error(
                    "harakiri: worker %d (pid: %d) thread %d ran %s for %.1f s (limit %s s); "
                    "killing the worker",
                    worker.index,
                    pid,
                    slot,
                    logs.printable(label),
                    elapsed,
                    limit,
                )
                self.retiring.add(pid)
                _kill(pid, signal.SIGKILL)
                break

    def _begin_stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.stop_deadline = time.monotonic() + self.config.graceful_timeout
        if self.listener is not None:
            self.listener.close()  # the workers keep their copy until they are done
        for pid in self.workers:
            _kill(pid, signal.SIGTERM)

    # -- signal dispatch (main loop, never in the handler) -----------------------------------

    def handle_term(self) -> None:
        log.info("master (pid: %d) got SIGTERM: graceful stop", os.getpid())
        self._begin_stop()

    def handle_int(self) -> None:
        log.info("master (pid: %d) got SIGINT: graceful stop", os.getpid())
        self._begin_stop()

    def handle_quit(self) -> None:
        log.info("master (pid: %d) got SIGQUIT: immediate stop", os.getpid())
        self._begin_stop()
        for pid in self.workers:
            _kill(pid, signal.SIGKILL)

    def handle_hup(self) -> None:
        if self.stopping:
            return
        log.info("master (pid: %d) got SIGHUP: reloading %d workers", os.getpid(), self.target)
        self.reload_old |= {w.pid for w in self._active()}
        self._manage_workers()

    def handle_ttin(self) -> None:
        self.target += 1
        log.info("master got SIGTTIN: %d workers", self.target)

    def handle_ttou(self) -> None:
        self.target = max(1, self.target - 1)
        log.info("master got SIGTTOU: %d workers", self.target)

    def handle_chld(self) -> None:
        """Nothing to do here: the loop reaps after dispatching."""


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass  # already gone; the loop reaps it.


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        return
    except OSError as exc:
        if exc.errno != errno.EAGAIN:
            raise
