"""A real memcached for tests, demos and benchmarks (imports no pytest; the session fixture is in
``tests/conftest.py``).

memcached cannot bind port 0 and report the port it got, so we pick a random port below the
Linux ephemeral range (client sockets never take ours) that nothing answers on, start memcached
on it in its own session and, when it exits with "Address already in use" (status 71,
EX_OSERR), try another port. Readiness is a TCP connect that succeeds, polled with a bounded
backoff that also notices at once when memcached exits.

Runs in the calling process (the calling thread); memcached is a child. Every process started
here is stopped by its PID (SIGTERM, then SIGKILL of its group) in a ``finally`` or at the end of
the session; the port, session and stop machinery is :mod:`examples.support.processes`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

from . import processes
from .processes import HOST, Daemon, port_answers, start_daemon, stop_process

MEMCACHED = shutil.which("memcached") or "/usr/bin/memcached"
#: memcached's exit status when it cannot listen (EX_OSERR): the port was taken.
EXIT_CANNOT_LISTEN = 71
PORT_ATTEMPTS = 20
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


class MemcachedError(RuntimeError):
    """memcached could not be started."""


class Memcached(Daemon):
    """One memcached process on 127.0.0.1; ``start()`` / ``stop()`` / context manager.

    Runs in the test process (pytest's main thread); memcached itself is a child process.
    ``address`` (``"127.0.0.1:PORT"``, the form our examples take on the command line), ``pid``
    and ``is_running()`` come from :class:`~examples.support.processes.Daemon`.
    """

    name = "memcached"
    failure = MemcachedError

    def __init__(self, *, threads: int = 4, memory_mb: int = 64) -> None:
        super().__init__(HOST)
        self._threads = threads
        self._memory_mb = memory_mb

    def start(self) -> Memcached:
        """Start memcached on a free port, retrying on port collisions."""
        tried: list[int] = []
        for _ in range(PORT_ATTEMPTS):
            port = processes.free_port(self.host, error=MemcachedError)
            tried.append(port)
            if self._start_on(port):
                self.port = port
                return self
        raise MemcachedError(f"memcached could not bind any of {len(tried)} ports: {tried}")

    def restart(self) -> Memcached:
        """Stop, then start again on the same port (a client's address stays valid), as a
        memcached restart does: every connection is cut and every item lost. Raises
        :class:`MemcachedError` when the port was taken meanwhile."""
        port = self.port
        self.stop()
        if not self._start_on(port):
            raise MemcachedError(f"memcached could not listen on port {port} again: taken")
        return self

    def _start_on(self, port: int) -> bool:
        """Start on ``port``; False when the port was taken, raise on any other failure."""
        argv = [
            MEMCACHED,
            "-l",
            HOST,
            "-p",
            str(port),
            "-U",
            "0",
            "-t",
            str(self._threads),
            "-m",
            str(self._memory_mb),
        ]
        if os.geteuid() == 0:
            argv += ["-u", "root"]  # memcached refuses to run as root without -u
        proc = start_daemon(argv, errors=subprocess.PIPE)  # stderr says why it exited
        try:
            processes.wait_until(
                lambda: proc.poll() is not None or port_answers(HOST, port, timeout=1.0),
                START_TIMEOUT,
                f"memcached to accept connections on port {port}",
                error=MemcachedError,
                max_delay=0.05,
            )
        except MemcachedError:
            _stop(proc)
            raise
        status = proc.poll()
        if status is None:
            self._proc = proc
            return True
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        _stop(proc)  # reaped already; closes its stderr pipe
        if status == EXIT_CANNOT_LISTEN or "Address already in use" in err:
            return False
        raise MemcachedError(f"memcached exited with status {status} on port {port}: {err}")

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL its group after STOP_TIMEOUT; idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _stop(proc)

    def flush(self) -> None:
        """Drop every item (``flush_all``), so tests don't see each other's keys."""
        with socket.create_connection((self.host, self.port), timeout=5.0) as sock:
            sock.sendall(b"flush_all\r\n")
            reply = sock.makefile("rb").readline()
        if reply != b"OK\r\n":
            raise MemcachedError(f"flush_all answered {reply!r}")

    def __enter__(self) -> Memcached:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop ``proc`` (by PID, then its group) and close the stderr pipe we read on failure."""
    try:
        stop_process(proc, timeout=STOP_TIMEOUT)
    finally:
        if proc.stderr is not None:
            proc.stderr.close()


def start_memcached(**kwargs: int) -> Memcached:
    """Start a memcached outside pytest (demos, benchmarks); call ``.stop()`` when done."""
    return Memcached(**kwargs).start()
