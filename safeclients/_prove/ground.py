"""``ProvingGround``: one app under the proving ground, from start to verdict.

``ProvingGround("myapp:app", workers=2, threads=4)`` (``packages``: more top-level packages
whose modules' clients are watched; ``profiles``: modules to import first, for the client
profiles they register; ``server_args``: more ``python -m server`` options) starts ``python -m
safeclients._prove.host`` in a child process (its own session: the master and its workers are
one process group, killed whole on stop), in the current directory, with a fresh temporary
``directory`` for the detectors' events. ``start()`` returns once every worker is ready, or
raises ``ProvingGroundNotStarted`` with the reason (the import's exception, the server's
refusal) and the server's log; ``url``, ``worker_pids()`` and ``log_text()`` are the running
server's; ``verdict()`` reads what the detectors saw so far; ``stop()`` (idempotent; also the
context manager's exit) stops the server (SIGTERM, then SIGKILL of the group after
``stop_timeout``) and removes the directory once its verdict has been read.

Runs in the caller's process and thread (the CLI's main thread, a test). Not fork-safe: stop it
in the process that started it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

from safeclients._prove import host, slots, verdict
from safeclients._prove._server import errors, testing
from safeclients._prove.errors import ProveError, ProvingGroundNotStarted

__all__ = ["ProvingGround"]


class ProvingGround:
    """An app running under the proving ground (module docstring)."""

    def __init__(
        self,
        app: str,
        *,
        workers: int = 2,
        threads: int = 4,
        packages: Iterable[str] = (),
        profiles: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        start_timeout: float = 60.0,
        stop_timeout: float = 30.0,
        server_args: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.workers = workers
        self.threads = threads
        self.stop_timeout = stop_timeout
        self.start_timeout = start_timeout
        self._server_args = list(server_args)
        self._env = {
            **(env or {}),
            host.PACKAGES_ENV: ",".join(packages),
            host.PROFILES_ENV: ",".join(profiles),
        }
        self._cwd = cwd if cwd is not None else os.getcwd()
        #: The run's events and client descriptions; made by start(), removed by stop().
        self.directory: Path | None = None
        self._server: testing.ServerProcess | None = None
        self._final: verdict.Verdict | None = None

    def start(self) -> ProvingGround:
        """Start the app and wait until every worker is ready; ``ProvingGroundNotStarted``
        (with the reason and the server's log) if it cannot be run. Once per ground."""
        if self._server is not None:
            raise ProveError(f"ProvingGround({self.app!r}) was already started")
        self.directory = Path(tempfile.mkdtemp(prefix="safeclients-prove-"))
        self._server = server = testing.ServerProcess(
            self.app,
            workers=self.workers,
            threads=self.threads,
            args=self._server_args,
            env={**self._env, host.DIR_ENV: str(self.directory)},
            cwd=self._cwd,
            ready_timeout=self.start_timeout,
            module=host.__name__,
        )
        try:
            server.start()
        except errors.ServerStartError:
            failed = self.directory / host.FAILED_FILE
            why = failed.read_text() if failed.exists() else ""
            status = self.stop()
            if not why:
                why = f"the server did not start (its master exited with status {status})"
            raise ProvingGroundNotStarted(f"{self.app}: {why}", server.log_text()) from None
        return self

    def stop(self) -> int | None:
        """Stop the server and its workers; returns the master's exit status (None if it was
        never started). Idempotent."""
        if self._server is None:
            return None
        status = self._server.stop(self.stop_timeout)
        directory = self.directory
        if directory is not None:
            if self._final is None and (directory / slots.CLIENTS_FILE).exists():
                try:
                    self._final = verdict.read(directory)
                except ProveError:
                    pass  # a description it could not read: verdict() says so
            shutil.rmtree(directory, ignore_errors=True)
        return status

    def verdict(self) -> verdict.Verdict:
        """What the detectors saw: so far while running, everything once stopped."""
        if self._final is not None:
            return self._final
        if self.directory is None or not self.directory.exists():
            raise ProveError(
                f"ProvingGround({self.app!r}) has no verdict: the app was not run under it"
            )
        return verdict.read(self.directory)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` of the running server."""
        return self._running().url

    @property
    def pid(self) -> int:
        """The master's pid."""
        return self._running().pid

    def worker_pids(self) -> list[int]:
        """The pids of the workers the master spawned and has not seen exit."""
        return self._running().worker_pids()

    def log_text(self) -> str:
        """Everything the server and the app wrote (stdout and stderr), one string."""
        return self._running().log_text()

    def _running(self) -> testing.ServerProcess:
        if self._server is None:
            raise ProveError(
                f"ProvingGround({self.app!r}) was not started: call start(), or use it in a "
                "with block"
            )
        return self._server

    def __enter__(self) -> ProvingGround:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
