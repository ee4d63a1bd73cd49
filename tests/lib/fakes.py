"""Fake clients for the library's unit and concurrency tests (no sockets)."""

from __future__ import annotations

import itertools
import os
import threading
import time
from typing import Any

_ids = itertools.count(1)


class FakeClient:
    """Records which thread and process created and called it, and whether it was closed."""

    def __init__(self) -> None:
        self.id = next(_ids)
        self.pid = os.getpid()
        self.thread = threading.get_ident()
        self.calls: list[tuple[int, int]] = []
        self.close_calls = 0

    def ping(self, value: Any = None) -> tuple[int, Any]:
        """Returns (instance id, value); records (thread, pid) of the caller."""
        self.calls.append((threading.get_ident(), os.getpid()))
        return self.id, value

    def whoami(self) -> tuple[int, int, int]:
        return self.id, self.pid, self.thread

    def fail(self, exc: BaseException) -> None:
        raise exc

    def close(self) -> None:
        self.close_calls += 1


class UnsafeClient:
    """Deliberately not thread-safe: detects overlapping calls and corrupts results then.

    ``echo(value)`` writes ``value`` to shared scratch state, yields the GIL (``time.sleep(0)``),
    then reads the scratch back: if another thread got in between, the result is wrong and the
    overlap is counted.
    """

    def __init__(self) -> None:
        self.inside = 0
        self.overlaps = 0
        self.scratch: Any = None

    def echo(self, value: Any) -> Any:
        self.inside += 1
        if self.inside > 1:
            self.overlaps += 1
        self.scratch = value
        time.sleep(0)
        result = self.scratch
        self.inside -= 1
        return result

    def close(self) -> None:
        pass


class BrokenConnectionError(Exception):
    """Named like a client library's connection error (discarded by default)."""


class CloseLog:
    """Writes "pid id" to a file each time an instance is closed, from any process."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, client: FakeClient) -> None:
        with open(self.path, "a") as log:
            log.write(f"{os.getpid()} {client.id} {client.pid}\n")

    def entries(self) -> list[tuple[int, int, int]]:
        try:
            with open(self.path) as log:
                return [tuple(map(int, line.split())) for line in log]  # type: ignore[misc]
        except FileNotFoundError:
            return []
