"""What every launcher in ``examples.support`` shares: free ports, port probes, polling, starting a
daemon in its own session, stopping it by PID and then its group, reading its log.

Runs in the calling process (a test session's main thread, a demo or a benchmark); the daemons
are its children. Imports no pytest.

Ports: gearmand, memcached, MariaDB, PostgreSQL, RabbitMQ and Redis cannot bind port 0 and report
the port they got, so :func:`free_ports` picks random loopback ports *below* the kernel's
ephemeral range (client sockets never get one by accident) that nothing answers on right now; a
launcher still retries on another port when its daemon finds the port taken (a race with another
process), a bounded number of times.

Sessions: :func:`start_daemon` starts each daemon in its own session (``start_new_session``), so
its PID is also its process-group ID; :func:`stop_process` signals the PID, waits, and then
SIGKILLs the group, so no helper the daemon forked outlives it. Root (a CI container) runs a
daemon as a system user through ``Popen(user=...)``, with no intermediate ``su`` process, so the
PID we hold is the daemon's own.

Waiting: an external process gives no event to wait on, so readiness is polled
(:func:`wait_until`) with a bounded backoff and a deadline.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, ClassVar

HOST = "127.0.0.1"
PORT_LOW = 20000  # below it: well-known services a developer's machine may run
PORT_HIGH = 32767  # the house rule's bound, even where the ephemeral range starts higher
PORT_PROBES = 50  # random picks per port wanted before giving up
STOP_TIMEOUT = 10.0  # seconds to wait for a signalled process, and again after SIGKILL

#: Where a daemon's stdout goes: a ``subprocess`` constant, an open binary file, or a log file
#: path (opened for appending).
Output = int | IO[bytes] | Path


def ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (client sockets), 32768 when unknown."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a TCP connect to ``host:port`` succeeds within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_ports(count: int, host: str = HOST, *, error: type[Exception] = RuntimeError) -> list[int]:
    """``count`` distinct random ports below the ephemeral range that nothing answers on now.

    Raises ``error`` (the launcher's own exception) after ``PORT_PROBES * count`` picks.
    """
    low, high = PORT_LOW, min(PORT_HIGH, max(PORT_LOW + 1, ephemeral_low() - 1))
    ports: list[int] = []
    for _ in range(PORT_PROBES * count):
        port = random.randint(low, high)
        if port not in ports and not port_answers(host, port):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise error(
        f"found only {len(ports)} of {count} free ports between {low} and {high} "
        f"after {PORT_PROBES * count} tries"
    )


def free_port(host: str = HOST, *, error: type[Exception] = RuntimeError) -> int:
    """One random port below the ephemeral range that nothing answers on now."""
    return free_ports(1, host, error=error)[0]


def wait_until(
    ready: Callable[[], bool],
    timeout: float,
    what: str,
    *,
    error: type[Exception] = TimeoutError,
    first_delay: float = 0.01,
    max_delay: float = 0.5,
) -> None:
    """Poll ``ready`` (an external process's state) with a bounded backoff until it is true.

    Raises ``error("timed out after T s waiting for <what>")`` past ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    delay = first_delay
    while not ready():
        if time.monotonic() > deadline:
            raise error(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(delay)  # polling an external process, bounded by the deadline
        delay = min(delay * 1.5, max_delay)


def run_as_kwargs(user_ids: tuple[int, int] | None) -> dict[str, Any]:
    """``Popen`` keyword arguments that run the child as ``(uid, gid)``; none for ``None``."""
    if user_ids is None:
        return {}
    return {"user": user_ids[0], "group": user_ids[1], "extra_groups": []}


def start_daemon(
    argv: Sequence[str],
    *,
    output: Output = subprocess.DEVNULL,
    errors: Output | None = None,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    user_ids: tuple[int, int] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session (its PID is its process group), stdin from /dev/null.

    ``output`` receives stdout; ``errors`` receives stderr (``None``: the same place as stdout,
    ``STDOUT`` when that is a pipe). A :class:`~pathlib.Path` is a log file opened for appending
    (the child keeps its own descriptor; ours is closed at once). ``env`` is the child's whole
    environment (``None``: ours). ``user_ids`` runs it as that ``(uid, gid)`` (root only).
    """
    opened: list[IO[bytes]] = []

    def target(where: Output) -> int | IO[bytes]:
        if isinstance(where, Path):
            opened.append(open(where, "ab"))  # noqa: SIM115 (closed below, once Popen has it)
            return opened[-1]
        return where

    try:
        stdout = target(output)
        if errors is None:
            stderr: int | IO[bytes] = subprocess.STDOUT if output == subprocess.PIPE else stdout
        else:
            stderr = target(errors)
        return subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            **run_as_kwargs(user_ids),
        )
    finally:
        for log in opened:
            log.close()


def stop_process(
    proc: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT
) -> None:
    """Send ``sig`` to ``proc`` by PID, wait up to ``timeout``, then SIGKILL its process group
    (whatever helpers or workers it forked, whatever it did with the signal) and reap it.

    Idempotent: a process that already exited is only reaped (and its group swept). For a child
    of :func:`start_daemon` the group is its own; for any other child ``killpg`` finds no group of
    that ID and is skipped.
    """
    try:
        if proc.poll() is None:
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                pass
            else:
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    pass
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if proc.poll() is None:
            proc.wait(timeout=timeout)


def read_log(path: Path, last: int | None = None) -> str:
    """The text of a daemon's log file (its last ``last`` characters), ``""`` if unreadable."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text if last is None else text[-last:]


class Daemon:
    """The child-process half of a launcher: where it listens, its ``Popen``, PID and stop.

    Runs in the calling process (the launcher's thread); the daemon is a child started with
    :func:`start_daemon`. Subclasses set ``name`` and ``failure`` (their own exception, raised by
    :attr:`pid` when nothing runs) and store the child in ``_proc`` once it answered.
    """

    name: ClassVar[str]
    failure: ClassVar[type[Exception]] = RuntimeError

    def __init__(self, host: str = HOST) -> None:
        self.host = host
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``"HOST:PORT"``, the form our examples take on the command line."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise self.failure(f"{self.name} is not running")
        return self._proc.pid

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _stop_daemon(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> None:
        """Forget the child, then :func:`stop_process` it (``sig`` by PID, SIGKILL its group).
        Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc, sig=sig, timeout=timeout)
