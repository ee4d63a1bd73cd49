"""Run the server in a child process for tests: port 0, readiness from its log, stop by PID.

Runs in the test process. The child is ``sys.executable -m server APP --bind 127.0.0.1:0 ...``
started in its own session, so the master and its workers share one process group whose id is
the master's pid: whatever happens to the master, :meth:`ServerProcess.stop` can make sure no
worker survives it. A reader thread drains the child's output (stdout and stderr together) into
memory and wakes waiters on every line; readiness is the master's "ready" line, so nothing here
polls or sleeps.

    with ServerProcess("tests.server.apps:hello", workers=2, threads=4) as srv:
        urllib.request.urlopen(srv.url + "/")
        srv.worker_pids(); srv.signal(signal.SIGHUP); srv.log_text()
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

from . import logs
from .errors import ServerStartError

REPO_ROOT = Path(__file__).resolve().parent.parent


class ServerProcess:
    """A running ``python -m server`` child; a context manager that stops it on exit.

    ``module`` is what runs with ``-m``: this package by default, or a host that takes the same
    arguments (``safeclients._prove.host``, the proving ground's master)."""

    def __init__(
        self,
        app: str,
        *,
        workers: int = 2,
        threads: int = 4,
        args: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        ready_timeout: float = 30.0,
        module: str = __package__ or "server",
    ) -> None:
        self.app = app
        self.command = [
            sys.executable,
            "-m",
            module,  # this package (``server``, or ``safeclients.server`` in the wheel) or a host
            app,
            "--bind",
            "127.0.0.1:0",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            *args,
        ]
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.cwd = str(cwd if cwd is not None else REPO_ROOT)
        self.ready_timeout = ready_timeout
        self.host = ""
        self.port = 0
        self.pid = 0
        self.returncode: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        # Guards _lines and _eof; notified on every new line and at end of output.
        self._lines_changed = threading.Condition()
        self._lines: list[str] = []
        self._eof = False

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> ServerProcess:
        """Start the child and wait until its master reports every worker ready."""
        self._proc = subprocess.Popen(
            self.command,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self._proc.pid
        self._reader = threading.Thread(
            target=self._read_output, name="server-log-reader", daemon=True
        )
        self._reader.start()
        try:
            listening = self.wait_for_log(logs.LISTENING_RE, timeout=self.ready_timeout)
            self.host, self.port = listening["host"], int(listening["port"])
            self.wait_for_log(logs.ALL_READY_RE, timeout=self.ready_timeout)
        except ServerStartError:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM the master, wait up to ``timeout``, then SIGKILL it and any worker left.

        Returns the master's exit status (negative: killed by that signal). Idempotent.
        """
        proc, self._proc = self._proc, None
        if proc is None:
            return self.returncode
        try:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(timeout)
        finally:
            self._kill_group(proc.pid)
            self.returncode = proc.returncode
            if self._reader is not None:
                self._reader.join(timeout)
            if proc.stdout is not None:
                proc.stdout.close()
        return self.returncode

    def _kill_group(self, pgid: int) -> None:
        """SIGKILL what is left of the child's process group (workers orphaned by the master)."""
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # the group is empty: every worker is gone, as it should be.

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what tests look at ------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the master."""
        os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int:
        """Wait for the master to exit by itself; return its exit status."""
        if self._proc is None:
            assert self.returncode is not None
            return self.returncode
        self.returncode = self._proc.wait(timeout)
        return self.returncode

    def log_text(self) -> str:
        """Everything the server wrote so far (stderr and stdout), one string."""
        with self._lines_changed:
            return "".join(self._lines)

    def log_position(self) -> int:
        """The number of log lines so far; pass it as ``after`` to wait for newer lines only."""
        with self._lines_changed:
            return len(self._lines)

    def wait_for_log(
        self, pattern: str | re.Pattern[str], *, timeout: float = 30.0, after: int = 0
    ) -> re.Match[str]:
        """Wait until a log line (from line ``after`` on) matches ``pattern``; return the match.

        Raises :class:`ServerStartError` with the log if the server's output ends first or the
        timeout passes.
        """
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        found: list[re.Match[str]] = []
        scanned = after

        def matched() -> bool:
            nonlocal scanned
            while scanned < len(self._lines):
                m = regex.search(self._lines[scanned])
                scanned += 1
                if m is not None:
                    found.append(m)
                    return True
            return self._eof

        with self._lines_changed:
            self._lines_changed.wait_for(matched, timeout)
            if found:
                return found[0]
            tail = "".join(self._lines[-40:])
        why = "exited" if self._eof else f"did not log it within {timeout} s"
        raise ServerStartError(
            f"server {self.command[3:]} {why} while waiting for {regex.pattern!r}; "
            f"log tail:\n{tail}"
        )

    def wait_for_lines(
        self, pattern: str | re.Pattern[str], count: int, *, timeout: float = 30.0, after: int = 0
    ) -> list[str]:
        """Wait until ``count`` log lines (from line ``after`` on) match ``pattern``; return
        them."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern

        def matching() -> list[str]:
            return [line for line in self._lines[after:] if regex.search(line)]

        with self._lines_changed:
            self._lines_changed.wait_for(lambda: len(matching()) >= count or self._eof, timeout)
            found = matching()
            if len(found) >= count:
                return found[:count]
            tail = "".join(self._lines[-40:])
        raise ServerStartError(
            f"server {self.command[3:]} logged {len(found)} of {count} lines matching "
            f"{regex.pattern!r}; log tail:\n{tail}"
        )

    def worker_pids(self) -> list[int]:
        """Pids of the workers the master spawned and has not yet seen exit, from its log."""
        alive: dict[int, None] = {}
        for line in self.log_text().splitlines():
            spawned = logs.SPAWNED_RE.search(line)
            if spawned:
                alive[int(spawned["pid"])] = None
                continue
            exited = logs.WORKER_EXITED_RE.search(line)
            if exited:
                alive.pop(int(exited["pid"]), None)
        return list(alive)

    def ready_worker_pids(self, after: int = 0) -> list[int]:
        """Pids of workers that logged "ready" (from log line ``after`` on) and have not exited."""
        ready: dict[int, None] = {}
        with self._lines_changed:
            lines = self._lines[:]
        for line in lines[after:]:
            m = logs.WORKER_READY_RE.search(line)
            if m:
                ready[int(m["pid"])] = None
        for line in lines:
            m = logs.WORKER_EXITED_RE.search(line)
            if m:
                ready.pop(int(m["pid"]), None)
        return list(ready)

    # -- reader thread -----------------------------------------------------------------------

    def _read_output(self) -> None:
        """Reader thread: move the child's output lines into memory until end of file."""
        assert self._proc is not None and self._proc.stdout is not None
        stream = self._proc.stdout
        try:
            for raw in iter(stream.readline, b""):
                with self._lines_changed:
                    self._lines.append(raw.decode("utf-8", "replace"))
                    self._lines_changed.notify_all()
        except ValueError:
            pass  # stop() closed the pipe under us after the child was gone; nothing is lost.
        finally:
            with self._lines_changed:
                self._eof = True
                self._lines_changed.notify_all()
