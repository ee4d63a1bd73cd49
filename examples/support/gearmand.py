"""A real gearmand (Debian's ``gearman-job-server``) and real Gearman workers for tests and demos.

Why real: the trap this project exists for (a shared ``gearman.GearmanClient`` returning another
thread's result) only shows with a real job server and real worker processes.

Ports: gearmand cannot bind port 0, so we pick a random port *below* the kernel's ephemeral range
(client sockets never get it by accident), skip ports something already answers on, start
gearmand, and accept the port only when the admin command ``getpid`` over that port answers with
our child's PID (so it is not someone else's server). On a collision gearmand does
not exit, it retries ``bind`` for ~20 s; we kill it by PID and try another port (bounded).

Everything runs in the test (or demo) process, in the calling thread; every child runs in its own
session and is stopped by its PID, then its group (:mod:`examples.support.processes`). The pid file
and log file live in a private temporary directory (never in the repository; never ``/dev/null``:
gearmand deletes its pid file on shutdown).

Imports no pytest: the tests wrap :func:`start_gearmand` and :func:`start_workers` in session
fixtures (``tests/conftest.py``); ``examples/demo.py`` and the benchmarks call them directly.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from examples.gearman.worker import client_id

from . import processes
from .processes import Daemon, read_log, start_daemon, stop_process

GEARMAND = shutil.which("gearmand") or "/usr/sbin/gearmand"
REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 10.0  # seconds for gearmand / a worker to come up on a loaded 2-core box
PORT_ATTEMPTS = 6
STOP_TIMEOUT = 10.0


class GearmandError(RuntimeError):
    """gearmand (or a worker) could not be started or did not answer as expected."""


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` (an external process's state: no event to wait on) until true."""
    processes.wait_until(predicate, timeout, what, error=GearmandError, max_delay=0.2)


def _stop_pid(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Signal ``proc`` by PID, wait, then SIGKILL its group if it does not go. Idempotent."""
    stop_process(proc, sig=sig, timeout=STOP_TIMEOUT)


class Gearmand(Daemon):
    """One gearmand child process on 127.0.0.1 (runs in the test / demo process).

    ``address``, ``pid`` and ``is_running()`` come from :class:`~examples.support.processes.Daemon`.
    """

    name = "gearmand"
    failure = GearmandError

    def __init__(self, host: str = "127.0.0.1", threads: int = 2) -> None:
        super().__init__(host)
        self.threads = threads
        self._dir = tempfile.mkdtemp(prefix="safeclients-gearmand-")

    # -- log ---------------------------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        return Path(self._dir) / "gearmand.log"

    def log_text(self) -> str:
        return read_log(self.log_path)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Gearmand:
        """Start gearmand: on ``self.port`` if one was already chosen, else on a fresh free port."""
        if self.is_running():
            return self
        if self.port:
            if not self._try_port(self.port):
                raise GearmandError(f"gearmand could not listen again on port {self.port}")
            return self
        for _ in range(PORT_ATTEMPTS):
            port = processes.free_port(self.host, error=GearmandError)
            if self._try_port(port):
                return self
            self.port = 0
        raise GearmandError(f"gearmand failed to start on {PORT_ATTEMPTS} different ports")

    def _try_port(self, port: int) -> bool:
        cmd = [
            GEARMAND,
            f"--listen={self.host}",
            f"--port={port}",
            f"--threads={self.threads}",
            f"--log-file={self.log_path}",
            f"--pid-file={Path(self._dir) / 'gearmand.pid'}",
            "--verbose=WARNING",  # INFO logs every connect and disconnect: megabytes per test run
        ]
        proc = start_daemon(cmd)  # stdout and stderr to /dev/null: it logs to --log-file
        self.port = port
        owner: list[str] = []

        def answered() -> bool:
            nonlocal owner
            if proc.poll() is not None:
                return True
            try:
                owner = self.admin("getpid", timeout=2.0)
            except OSError:  # not listening yet (or still retrying bind() after a collision)
                return False
            return True

        try:
            _wait_for(answered, READY_TIMEOUT, f"gearmand to answer on port {port}")
        except GearmandError:
            owner = []
        if proc.poll() is None and owner == [f"OK {proc.pid}"]:
            self._proc = proc
            return True
        # Exited, stuck retrying bind(), or our connect reached someone else's server.
        _stop_pid(proc, signal.SIGKILL)
        return False

    def kill(self) -> None:
        """SIGKILL gearmand (a crash, as seen by clients); :meth:`start` brings it back on the
        same port."""
        self._stop_daemon(signal.SIGKILL, STOP_TIMEOUT)

    def stop(self) -> None:
        """SIGTERM gearmand by PID and wait; SIGKILL its group if it hangs. Idempotent."""
        self._stop_daemon(signal.SIGTERM, STOP_TIMEOUT)

    def restart(self) -> Gearmand:
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop and remove the temporary directory. Idempotent."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Gearmand:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- admin protocol ----------------------------------------------------------------------
    def admin(self, command: str, timeout: float = 5.0) -> list[str]:
        """Send one text-protocol admin command; return its reply lines (without the final
        ``.``)."""
        multi_line = command.split()[0] in {"workers", "status"}
        with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
            sock.sendall(command.encode() + b"\n")
            buf = b""
            while True:
                if multi_line and (buf == b".\n" or buf.endswith(b"\n.\n")):
                    break
                if not multi_line and buf.endswith(b"\n"):
                    break
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
        lines = buf.decode(errors="replace").splitlines()
        return lines[:-1] if multi_line and lines and lines[-1] == "." else lines

    def workers_listing(self) -> list[str]:
        """``workers`` lines of every connection *except* the admin connection asking."""
        lines = self.admin("workers")
        # Our own admin connection is listed too, as "FD IP - :" (no id, no functions), like an
        # idle client; drop exactly one such line so counts are of the others.
        for i, line in enumerate(lines):
            if line.split(":", 1)[0].split()[-1:] == ["-"] and line.rstrip().endswith(":"):
                return lines[:i] + lines[i + 1 :]
        return lines

    def connection_count(self) -> int:
        """Clients and workers connected right now (the asking admin connection excluded)."""
        return len(self.workers_listing())

    def registered_workers(self, function: str = "reverse") -> int:
        """Connections that registered ``function``."""
        return sum(
            1 for line in self.workers_listing() if function in line.split(":", 1)[1].split()
        )

    def client_connection_count(self, function: str = "reverse") -> int:
        """Connections that did not register ``function`` (clients, in our setups)."""
        return self.connection_count() - self.registered_workers(function)


class Workers:
    """N ``python -m examples.gearman.worker`` processes attached to one gearmand, or several.

    With ``also=[other, ...]`` each worker gets the list ``server, *also`` (Gearman's way to scale
    out: every worker registers at every job server) and :meth:`ensure` waits until each of them
    lists every worker.
    """

    def __init__(self, server: Gearmand, count: int = 2, *, also: Sequence[Gearmand] = ()) -> None:
        self.server = server
        self.servers = [server, *also]
        self.count = count
        self._procs: list[subprocess.Popen[bytes]] = []
        self._log = open(Path(server._dir) / "workers.log", "ab")  # noqa: SIM115 (closed in close())

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.poll() is None]

    def _spawn(self) -> None:
        cmd = [
            sys.executable,
            "-m",
            "examples.gearman.worker",
            "--servers",
            ",".join(s.address for s in self.servers),
        ]
        self._procs.append(start_daemon(cmd, output=self._log, cwd=REPO_ROOT))

    def ensure(self) -> Workers:
        """Restart missing workers; return when ``count`` of them are registered at gearmand."""
        self._procs = [p for p in self._procs if p.poll() is None]
        while len(self._procs) < self.count:
            self._spawn()
        # By client id: a killed worker's connection lingers at gearmand for a moment, and other
        # tests may attach workers of their own.
        for server in self.servers:
            if server.is_running():
                _wait_for(
                    lambda server=server: not self.unregistered(server),
                    READY_TIMEOUT * 2,
                    f"workers {self.pids} to register 'reverse' at {server.address}",
                )
        return self

    def unregistered(self, server: Gearmand | None = None) -> list[int]:
        """PIDs of our live workers that gearmand (``server``, default the first) does not (yet)
        list as doing ``reverse``."""
        listed = set()
        for line in (server or self.server).workers_listing():
            head, _, functions = line.partition(":")
            fields = head.split()
            if len(fields) >= 3 and "reverse" in functions.split():
                listed.add(fields[2])
        return [pid for pid in self.pids if client_id(pid).decode() not in listed]

    def kill_one(self) -> int:
        """SIGKILL one worker; return its PID."""
        for proc in self._procs:
            if proc.poll() is None:
                _stop_pid(proc, signal.SIGKILL)
                return proc.pid
        raise GearmandError("no live worker to kill")

    def close(self) -> None:
        for proc in self._procs:
            _stop_pid(proc)
        self._procs = []
        self._log.close()

    def __enter__(self) -> Workers:
        return self.ensure()

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_gearmand(threads: int = 2) -> Gearmand:
    """Start a gearmand on a free loopback port; the caller must ``close()`` it (or ``with``)."""
    server = Gearmand(threads=threads)
    try:
        return server.start()
    except BaseException:
        server.close()
        raise


def start_workers(server: Gearmand, count: int = 2, *, also: Sequence[Gearmand] = ()) -> Workers:
    """Start ``count`` reverse workers on ``server`` (and ``also``); the caller must ``close()``."""
    workers = Workers(server, count, also=also)
    try:
        return workers.ensure()
    except BaseException:
        workers.close()
        raise
