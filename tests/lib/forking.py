"""Run a function in a fork child and get its JSON result back through a pipe.

Two ways to fork: ``os.fork()`` (runs Python's at-fork hooks, like gunicorn) and a raw
``fork()`` called from C through ``ctypes.PyDLL`` (runs no hooks and skips CPython's own after-fork
bookkeeping, like uWSGI's workers; the GIL stays held across the call so the child can run).
The child always leaves with ``os._exit`` and is waited for with a deadline, then killed by pid.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import time
import traceback
from collections.abc import Callable
from typing import Any

DEADLINE = 30.0

_libc = ctypes.PyDLL(None)
_libc.fork.restype = ctypes.c_int


def c_fork() -> int:
    """fork() from C: no os.register_at_fork hooks, no PyOS_AfterFork_Child."""
    pid: int = _libc.fork()
    if pid < 0:
        raise OSError(ctypes.get_errno(), "fork failed")
    return pid


FORKS: dict[str, Callable[[], int]] = {"os.fork": os.fork, "c_fork": c_fork}


def run_in_child(fork: Callable[[], int], child: Callable[[], Any]) -> Any:
    """Fork with ``fork``, run ``child()`` in the child, return its result in the parent.

    An exception in the child is re-raised in the parent as AssertionError with its traceback.
    """
    read_end, write_end = os.pipe()
    pid = fork()
    if pid == 0:
        code = 0
        try:
            os.close(read_end)
            try:
                payload = {"ok": child()}
            except BaseException as exc:  # reported to the parent through the pipe
                payload = {"error": f"{type(exc).__name__}: {exc}", "tb": traceback.format_exc()}
            os.write(write_end, json.dumps(payload).encode())
        except BaseException:  # nothing else may run in the child: leave now
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        data = _read_all(read_end, DEADLINE)
    finally:
        os.close(read_end)
        _reap(pid)
    if not data:
        raise AssertionError("the child reported nothing (hung or crashed)")
    payload = json.loads(data)
    if "error" in payload:
        raise AssertionError(f"child raised {payload['error']}\n{payload['tb']}")
    return payload["ok"]


def _read_all(fd: int, timeout: float) -> bytes:
    chunks = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return b""
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            return b""
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _reap(pid: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
