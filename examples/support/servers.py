"""Real uWSGI and gunicorn in child processes, for the integration tests, examples and benchmarks.

Both bind port 0 and log the port they got: uWSGI says ``bound to TCP address 127.0.0.1:PORT
(port auto-assigned)``, gunicorn says ``Listening at: http://127.0.0.1:PORT``. A reader thread
drains the child's output into memory and wakes waiters on every line, so readiness is read from
the log (the port line, then one "worker booted" line per worker), then confirmed by one HTTP
request to ``/health``. Each server runs in its own session
(:func:`examples.support.processes.start_daemon`): :meth:`ExternalServer.stop` signals the master
by PID (uWSGI runs with ``--die-on-term`` so SIGTERM means "stop"), waits, and then SIGKILLs the
whole process group so no worker outlives a test (:func:`~examples.support.processes.stop_process`).

Runs in the calling process: ``start()`` and ``stop()`` block the calling thread; one daemon
thread per server (``<name>-log``) reads the child's output.

    with uwsgi_server("examples.gearman.app_unsafe:application", env=...) as srv:
        srv.url, srv.port, srv.pid, srv.worker_pids(), srv.log_text()
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

import psutil

from .processes import start_daemon, stop_process

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
START_TIMEOUT = 60.0  # a loaded 2-core machine: imports of the app in each worker
STOP_TIMEOUT = 15.0
MASTER_POLL = 0.5  # seconds between checks that the master is still alive while it starts


class ServerFailed(RuntimeError):
    """The server did not come up (its log is in the message) or did not stop."""


class ExternalServer:
    """A real server child process; a context manager that stops it (and its group) on exit."""

    def __init__(
        self,
        name: str,
        command: list[str],
        *,
        port_pattern: str,
        worker_pattern: str,
        workers: int,
        env: Mapping[str, str] | None = None,
        scratch: Path | None = None,
    ) -> None:
        self.name = name
        self.scratch = scratch  # a temporary directory of ours, removed by stop()
        self.command = command
        self.port_re = re.compile(port_pattern)
        self.worker_re = re.compile(worker_pattern)
        self.workers = workers
        self.env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(REPO_ROOT),
            **(env or {}),
        }
        self.host = "127.0.0.1"
        self.port = 0
        self.pid = 0
        self._proc: subprocess.Popen[bytes] | None = None
        # Guards _lines and _eof; notified on every new line and at end of output.
        self._lines_changed = threading.Condition()
        self._lines: list[str] = []
        self._eof = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log_text(self) -> str:
        with self._lines_changed:
            return "".join(self._lines)

    def worker_pids(self) -> list[int]:
        try:
            return [c.pid for c in psutil.Process(self.pid).children()]
        except psutil.NoSuchProcess:
            return []

    def _read_output(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for raw in self._proc.stdout:
            with self._lines_changed:
                self._lines.append(raw.decode(errors="replace"))
                self._lines_changed.notify_all()
        with self._lines_changed:
            self._eof = True
            self._lines_changed.notify_all()

    def _wait_log(self, deadline: float) -> None:
        """Wait for the port line and ``workers`` worker-ready lines, or fail with the log."""
        with self._lines_changed:
            while True:
                text = "".join(self._lines)
                match = self.port_re.search(text)
                booted = len(self.worker_re.findall(text))
                if match and booted >= self.workers:
                    self.port = int(match.group(1))
                    return
                remaining = deadline - time.monotonic()
                # The master may exit while a worker it forked still holds the output pipe (no
                # EOF then): gunicorn's "Worker failed to boot" shutdown leaves one behind.
                exited = self._proc is not None and self._proc.poll() is not None
                if self._eof or exited or remaining <= 0:
                    why = (
                        "exited"
                        if self._eof or exited
                        else f"not ready after {START_TIMEOUT:.0f} s"
                    )
                    raise ServerFailed(
                        f"{self.name} {why} ({booted}/{self.workers} workers up):\n{text[-8000:]}"
                    )
                # Woken by every line; the bound re-checks the master (an exit writes no line).
                self._lines_changed.wait(min(remaining, MASTER_POLL))

    def _wait_http(self, deadline: float) -> None:
        """One answered request proves a worker accepts (the log says only that it forked)."""
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=5) as response:
                    response.read()
                    return
            except (urllib.error.URLError, OSError) as exc:
                if self._proc is not None and self._proc.poll() is not None:
                    # Its workers failed to boot (gunicorn then stops), after the log said they
                    # were booting: no answer will ever come.
                    raise ServerFailed(
                        f"{self.name} exited ({exc}):\n{self.log_text()[-8000:]}"
                    ) from None
                if time.monotonic() > deadline:
                    raise ServerFailed(
                        f"{self.name} does not answer on {self.url}: {exc}\n"
                        f"{self.log_text()[-3000:]}"
                    ) from None
                time.sleep(0.1)  # polling an external process, bounded by the deadline

    def start(self) -> ExternalServer:
        self._proc = start_daemon(self.command, output=subprocess.PIPE, cwd=REPO_ROOT, env=self.env)
        self.pid = self._proc.pid
        threading.Thread(target=self._read_output, name=f"{self.name}-log", daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        try:
            self._wait_log(deadline)
            self._wait_http(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGTERM the master by PID, wait, then SIGKILL its process group. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            stop_process(proc, timeout=STOP_TIMEOUT)  # leftover workers too: it kills the group
        finally:
            if self.scratch is not None:
                shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> ExternalServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def uwsgi_server(
    app: str,
    *,
    processes: int = 2,
    threads: int = 8,
    lazy_apps: bool = False,
    env: Mapping[str, str] | None = None,
    args: Iterable[str] = (),
) -> ExternalServer:
    """uWSGI with its default (non-lazy) loading: the app is imported once, in the master.

    No ``py-call-osafterfork``: as in a stock deployment, ``os.register_at_fork`` hooks do not run
    in workers.
    """
    module, _, callable_name = app.partition(":")
    command = [
        str(BIN / "uwsgi"),
        "--master",
        "--processes",
        str(processes),
        "--threads",
        str(threads),
        "--http-socket",
        "127.0.0.1:0",
        "--module",
        f"{module}:{callable_name or 'application'}",
        "--pythonpath",
        str(REPO_ROOT),
        "--need-app",
        "--die-on-term",
        "--disable-logging",
        # http-socket speaks HTTP/1.0-style: it closes after each response without saying so;
        # the header tells keep-alive clients (our load driver) not to reuse the connection.
        "--add-header",
        "Connection: close",
        "--listen",
        "128",
        *(["--lazy-apps"] if lazy_apps else []),
        *args,
    ]
    return ExternalServer(
        "uwsgi",
        command,
        port_pattern=r"bound to TCP address [\d.]+:(\d+)",
        worker_pattern=r"spawned uWSGI worker \d+",
        workers=processes,
        env=env,
    )


def uwsgi_ini_server(
    ini: Path, *, env: Mapping[str, str] | None = None, workers: int = 2
) -> ExternalServer:
    """uWSGI run from an ini file (``examples/deploy/uwsgi.ini``) with its port swapped for 0."""
    text = re.sub(r"(?m)^http-socket\s*=.*$", "http-socket = 127.0.0.1:0", ini.read_text())
    scratch = Path(tempfile.mkdtemp(prefix="safeclients-uwsgi-"))
    (scratch / ini.name).write_text(text)
    return ExternalServer(
        "uwsgi",
        [str(BIN / "uwsgi"), "--ini", str(scratch / ini.name)],
        port_pattern=r"bound to TCP address [\d.]+:(\d+)",
        worker_pattern=r"spawned uWSGI worker \d+",
        workers=workers,
        env=env,
        scratch=scratch,
    )


def script_server(
    command: list[str], *, env: Mapping[str, str] | None = None, workers: int = 2
) -> ExternalServer:
    """Our server started by a script (``examples/deploy/server.sh``), with ``BIND`` on port 0."""
    return ExternalServer(
        "server",
        command,
        port_pattern=r"listening on http://[\d.]+:(\d+) \(master pid",
        worker_pattern=r"worker \d+ \(pid: \d+\) ready",
        workers=workers,
        env={"BIND": "127.0.0.1:0", **(env or {})},
    )


def gunicorn_server(
    app: str,
    *,
    workers: int = 2,
    threads: int = 8,
    preload: bool = False,
    env: Mapping[str, str] | None = None,
    args: Iterable[str] = (),
    config: Path | None = None,
    worker_class: str = "gthread",
) -> ExternalServer:
    """gunicorn's gthread worker (or ``worker_class="gevent"``: a greenlet per connection, and
    ``threads`` unused); ``preload=True`` imports the app in the master before forking.

    With ``config`` (``examples/deploy/gunicorn.conf.py``) the settings come from that file, with
    ``BIND`` on port 0 and ``GUNICORN_PRELOAD`` from ``preload``.
    """
    if config is not None:
        command = [str(BIN / "gunicorn"), "-c", str(config), *args, app]
        env = {"BIND": "127.0.0.1:0", "GUNICORN_PRELOAD": "1" if preload else "0", **(env or {})}
    else:
        command = [
            str(BIN / "gunicorn"),
            "-k",
            worker_class,
            "-w",
            str(workers),
            *(["--threads", str(threads)] if worker_class == "gthread" else []),
            "-b",
            "127.0.0.1:0",
            "--graceful-timeout",
            "5",
            "--timeout",
            "60",
            *(["--preload"] if preload else []),
            *args,
            app,
        ]
    return ExternalServer(
        "gunicorn",
        command,
        port_pattern=r"Listening at: http://[\d.]+:(\d+)",
        worker_pattern=r"Booting worker with pid",
        workers=workers,
        env=env,
    )
