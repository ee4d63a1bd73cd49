"""The launchers' shared toolkit (``examples/support/processes.py``) on real processes and sockets:
a stop reaches the daemon's whole group, free ports are free and below the ephemeral range, a
wait that never comes true raises the launcher's own error with its numbers.

Runs in the pytest process; every child is stopped by PID in ``finally``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from examples.support.processes import (
    HOST,
    PORT_HIGH,
    PORT_LOW,
    ephemeral_low,
    free_ports,
    port_answers,
    read_log,
    start_daemon,
    stop_process,
    wait_until,
)

pytestmark = pytest.mark.integration

# A parent that starts a grandchild (same process group), prints its PID, and ignores SIGTERM
# (so only the group SIGKILL can end it), then waits for stdin to close.
PARENT = """
import signal, subprocess, sys
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                         stdin=subprocess.PIPE)
print(child.pid, flush=True)
sys.stdin.read()
"""


class WaitFailed(Exception):
    pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_stop_process_kills_the_group_of_a_daemon_that_ignores_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", PARENT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    grandchild = 0
    try:
        assert proc.stdout is not None
        grandchild = int(proc.stdout.readline())
        assert os.getpgid(grandchild) == proc.pid, "the grandchild is not in the daemon's group"
        stop_process(proc, timeout=2.0)
        assert proc.returncode == -signal.SIGKILL, f"daemon ended with {proc.returncode}"
        # The grandchild is not our child: once killed, init reaps it; poll its PID, bounded.
        wait_until(
            lambda: not _alive(grandchild), 10.0, f"grandchild {grandchild} to go", error=WaitFailed
        )
        stop_process(proc, timeout=2.0)  # idempotent on a reaped process
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        if proc.stdin is not None:
            proc.stdin.close()
        if proc.stdout is not None:
            proc.stdout.close()


def test_start_daemon_runs_in_its_own_session_and_logs_to_a_file(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    proc = start_daemon(
        [
            sys.executable,
            "-c",
            "import os, sys; print(os.getsid(0)); print('err', file=sys.stderr)",
        ],
        output=log,
    )
    try:
        assert proc.wait(timeout=30) == 0
    finally:
        stop_process(proc, timeout=5.0)
    lines = read_log(log).split()
    assert lines[0] == str(proc.pid), f"session {lines[0]} is not the daemon's PID {proc.pid}"
    assert "err" in lines, f"stderr did not reach the log: {lines}"
    assert read_log(log, last=4) == "err\n"
    assert read_log(tmp_path / "missing.log") == ""


def test_free_ports_are_distinct_unanswered_and_below_the_ephemeral_range() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5, ports
    high = min(PORT_HIGH, ephemeral_low() - 1)
    assert all(PORT_LOW <= p <= high for p in ports), (ports, PORT_LOW, high)
    assert not any(port_answers(HOST, p) for p in ports), ports


def test_port_answers_sees_a_listener() -> None:
    with socket.create_server((HOST, 0)) as listener:
        port = listener.getsockname()[1]
        assert port_answers(HOST, port)
    assert not port_answers(HOST, port)


def test_wait_until_raises_the_callers_error_with_the_timeout() -> None:
    calls: list[int] = []

    def never() -> bool:
        calls.append(1)
        return False

    with pytest.raises(WaitFailed, match=r"timed out after 0\.1 s waiting for nothing"):
        wait_until(never, 0.1, "nothing", error=WaitFailed)
    assert len(calls) >= 2, f"polled only {len(calls)} times"
