"""A real memcached for tests, demos and benchmarks (imports no pytest; the session fixture is in
``tests/conftest.py``).

memcached cannot bind port 0 and report the port it got, so we pick a random port below the
Linux ephemeral range (which starts at 32768, so client sockets never take ours), start
memcached on it and, when it exits with "Address already in use" (status 71, EX_OSERR), try
another port. Readiness is a TCP connect that succeeds; the wait between attempts is a bounded
``Popen.wait``, which also notices at once when memcached exits.

Every process started here is stopped by its PID (SIGTERM, then SIGKILL) in a ``finally`` or at
the end of the session.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

MEMCACHED = shutil.which("memcached") or "/usr/bin/memcached"
HOST = "127.0.0.1"

#: memcached's exit status when it cannot listen (EX_OSERR): the port was taken.
EXIT_CANNOT_LISTEN = 71
PORT_RANGE = (15000, 32000)
PORT_ATTEMPTS = 20
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


class MemcachedError(RuntimeError):
    """memcached could not be started."""


class Memcached:
    """One memcached process on 127.0.0.1; ``start()`` / ``stop()`` / context manager.

    Runs in the test process (pytest's main thread); memcached itself is a child process.
    """

    def __init__(self, *, threads: int = 4, memory_mb: int = 64) -> None:
        self.host = HOST
        self.port = 0
        self._threads = threads
        self._memory_mb = memory_mb
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``"127.0.0.1:PORT"``, the form our examples take on the command line."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise MemcachedError("memcached is not running")
        return self._proc.pid

    def start(self) -> Memcached:
        """Start memcached on a free port, retrying on port collisions."""
        tried: list[int] = []
        for _ in range(PORT_ATTEMPTS):
            port = random.randrange(*PORT_RANGE)
            tried.append(port)
            if self._start_on(port):
                self.port = port
                return self
        raise MemcachedError(f"memcached could not bind any of {len(tried)} ports: {tried}")

    def _start_on(self, port: int) -> bool:
        """Start on ``port``; False when the port was taken, raise on any other failure."""
        argv = [MEMCACHED, "-l", HOST, "-p", str(port), "-U", "0",
                "-t", str(self._threads), "-m", str(self._memory_mb)]
        if os.geteuid() == 0:
            argv += ["-u", "root"]  # memcached refuses to run as root without -u
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((HOST, port), timeout=1.0):
                    self._proc = proc
                    return True
            except OSError:
                pass  # not listening yet: wait below, which also notices an exit
            try:
                status = proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                continue
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            if status == EXIT_CANNOT_LISTEN or "Address already in use" in err:
                return False
            raise MemcachedError(f"memcached exited with status {status} on port {port}: {err}")
        _stop(proc)
        raise MemcachedError(f"memcached did not accept connections on port {port} "
                             f"within {START_TIMEOUT:.0f} s")

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL after STOP_TIMEOUT; idempotent."""
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
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)
    if proc.stderr is not None:
        proc.stderr.close()


def start_memcached(**kwargs: int) -> Memcached:
    """Start a memcached outside pytest (demos, benchmarks); call ``.stop()`` when done."""
    return Memcached(**kwargs).start()
