"""What every backend launcher shares: scratch dir, system user, free ports, start, stop by PID.

Runs in the calling process (a test session's main thread, a demo or a benchmark); the server
is a child process in its own session (``start_new_session``), so :meth:`Backend.stop` can signal
it by PID and then SIGKILL whatever is left of its process group.

Nothing global: the data lives in a private temporary directory, the ports are random loopback
ports below the ephemeral range (none of these servers can bind port 0 and report it) that
nothing answers on, and a port that turns out to be taken (the server exits) is retried on
another one, a bounded number of times. Readiness is a real client round trip (:meth:`_ping`),
polled with a bounded backoff: an external process gives no event to wait on. The ports,
session, polling and stop machinery is :mod:`examples.support.processes`, shared with the other
launchers; the names this module always exported (``HOST``, ``free_ports``, ``port_answers``,
``wait_until``) stay, raising the backends' own errors.

Running as root (a CI container), each server runs as its Debian system user (``mysql``,
``postgres``, ``rabbitmq``, ``redis``) through ``Popen(user=...)``, so there is no intermediate
``su``/``runuser`` process and the PID we hold is the server's own; PostgreSQL refuses to run
as root at all. Not root, it runs as the calling user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

from .. import processes
from ..processes import HOST, Daemon, port_answers, read_log, run_as_kwargs, start_daemon
from .errors import BackendError, BackendMissingError, BackendStartError

START_TIMEOUT = 90.0  # seconds: RabbitMQ boots an Erlang VM; a loaded 2-core box is slow
STOP_TIMEOUT = 20.0
PORT_ATTEMPTS = 4
COMMAND_TIMEOUT = 60.0  # one admin or set-up command (initdb, rabbitmqctl)

__all__ = [
    "COMMAND_TIMEOUT",
    "HOST",
    "PORT_ATTEMPTS",
    "START_TIMEOUT",
    "STOP_TIMEOUT",
    "Backend",
    "admin_cursor",
    "free_ports",
    "port_answers",
    "wait_until",
]


def free_ports(count: int, host: str = HOST) -> list[int]:
    """``count`` distinct random ports below the ephemeral range that nothing answers on now."""
    return processes.free_ports(count, host, error=BackendError)


def wait_until(ready: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``ready`` (an external process's state) with a bounded backoff until true."""
    processes.wait_until(ready, timeout, what, error=BackendStartError, first_delay=0.02)


@contextmanager
def admin_cursor(conn: Any) -> Iterator[Any]:
    """A cursor on ``conn`` (a new DB-API admin connection); closes both on exit."""
    try:
        with conn.cursor() as cur:
            yield cur
    finally:
        conn.close()


class Backend(Daemon):
    """One server child process with its data in a temporary directory.

    Runs in the calling process (its start, stop and admin calls block the calling thread); the
    server is a child in its own session (:func:`~examples.support.processes.start_daemon`).

    Subclasses give: ``name``, ``package``, ``system_user``, :meth:`binary`, :meth:`_prepare`
    (once per data directory), :meth:`_command`, :meth:`_ping` (a real client round trip),
    :meth:`_setup` (after the first start), and the two admin operations.
    """

    name: ClassVar[str]
    package: ClassVar[str]
    system_user: ClassVar[str]
    ports_needed: ClassVar[int] = 1
    failure = BackendError

    def __init__(self, host: str = HOST) -> None:
        super().__init__(host)
        self.extra_ports: list[int] = []
        self.scratch = Path(tempfile.mkdtemp(prefix=f"safeclients-{self.name}-"))
        self._prepared = False
        self._set_up = False

    # -- to override -------------------------------------------------------------------------
    @classmethod
    def binary(cls) -> str:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Create the data directory (initdb and the like); runs once, before the first start."""

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        return {}

    def _ping(self) -> None:
        """One real client round trip; raises while the server is not ready."""
        raise NotImplementedError

    def _setup(self) -> None:
        """Create the app's user, database and rows; runs once, after the first start."""

    def connection_count(self) -> int:
        """Client connections the server holds now, the asking admin connection excluded."""
        raise NotImplementedError

    def kill_all_connections(self) -> int:
        """Close every client connection server-side (as a restart does); return how many."""
        raise NotImplementedError

    @property
    def url(self) -> str:
        raise NotImplementedError

    @property
    def params(self) -> dict[str, Any]:
        """Keyword arguments for the driver's ``connect``."""
        raise NotImplementedError

    # -- shared (pid, is_running, address come from Daemon) ----------------------------------
    @property
    def log_path(self) -> Path:
        return self.scratch / "server-output.log"

    def log_tail(self, chars: int = 4000) -> str:
        texts = []
        for path in sorted(self.scratch.rglob("*.log")):
            texts.append(f"--- {path.name}\n{read_log(path, chars)}")
        return "\n".join(texts)[-chars * 2 :]

    def user_ids(self) -> tuple[int, int] | None:
        """(uid, gid) of the system user to run as, when we are root; None otherwise."""
        if os.geteuid() != 0:
            return None
        try:
            entry = pwd.getpwnam(self.system_user)
        except KeyError:
            raise BackendMissingError(
                self.name, f"system user {self.system_user!r}", self.package
            ) from None
        return entry.pw_uid, entry.pw_gid

    def _chown_scratch(self) -> None:
        ids = self.user_ids()
        if ids is None:
            return
        for path in [self.scratch, *self.scratch.rglob("*")]:
            os.chown(path, *ids, follow_symlinks=False)

    def run_command(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = COMMAND_TIMEOUT,
    ) -> str:
        """Run a set-up or admin command as the server's user; return stdout, raise on failure."""
        proc = subprocess.run(
            list(argv),
            cwd=self.scratch,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            **run_as_kwargs(self.user_ids()),
        )
        if proc.returncode != 0:
            raise BackendError(
                f"{self.name}: {' '.join(argv)} exited {proc.returncode}:\n"
                f"{(proc.stdout + proc.stderr)[-3000:]}"
            )
        return str(proc.stdout)

    def start(self) -> Backend:
        """Start on a free port (retried on another when taken); return once a client answered."""
        if self.is_running():
            return self
        if not Path(self.binary()).exists():
            raise BackendMissingError(self.name, self.binary(), self.package)
        if not self._prepared:
            self._chown_scratch()
            self._prepare()
            self._chown_scratch()
            self._prepared = True
        failures: list[str] = []
        for _ in range(PORT_ATTEMPTS):
            self.port, *self.extra_ports = free_ports(self.ports_needed, self.host)
            if self._start_once(failures):
                if not self._set_up:
                    self._setup()
                    self._set_up = True
                return self
        raise BackendStartError(
            f"{self.name} failed to start on {PORT_ATTEMPTS} port sets: "
            f"{'; '.join(failures)}\n{self.log_tail()}"
        )

    def restart(self) -> Backend:
        """Stop, then start again on the same port (a clients' URL stays valid), as a backend
        restart or failover does; every client connection is cut. Raises
        :class:`BackendStartError` when the server does not come back on that port."""
        port = self.port
        self.stop()
        failures: list[str] = []
        if not self._start_once(failures):
            raise BackendStartError(
                f"{self.name} did not restart on port {port}: {'; '.join(failures)}\n"
                f"{self.log_tail()}"
            )
        return self

    def _start_once(self, failures: list[str]) -> bool:
        proc = start_daemon(
            self._command(),
            output=self.log_path,
            cwd=self.scratch,
            env={**os.environ, **self._env()},
            user_ids=self.user_ids(),
        )
        self._proc = proc
        last: list[str] = []

        def answered() -> bool:
            if proc.poll() is not None:
                return True
            try:
                self._ping()
            except Exception as exc:  # noqa: BLE001 (any driver error means "not ready yet")
                last[:] = [f"{type(exc).__name__}: {exc}"]
                return False
            return True

        try:
            wait_until(answered, START_TIMEOUT, f"{self.name} to answer on port {self.port}")
        except BackendStartError as exc:
            failures.append(f"port {self.port}: {exc} (last: {last[0] if last else '-'})")
            self.stop()
            return False
        if proc.poll() is not None:
            failures.append(f"port {self.port}: exited with status {proc.returncode}")
            self.stop()
            return False
        return True

    def stop(self) -> None:
        """SIGTERM the server by PID, wait, then SIGKILL its process group. Idempotent."""
        self._stop_daemon(timeout=STOP_TIMEOUT)

    def close(self) -> None:
        """Stop and remove the data directory. Idempotent."""
        self.stop()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> Backend:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
