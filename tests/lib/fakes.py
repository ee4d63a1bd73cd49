"""Fake clients for the library's unit and concurrency tests (no sockets)."""

from __future__ import annotations

import asyncio
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


class AsyncFake:
    """An async client in redis.asyncio's shape: ``command`` is a plain function returning a
    coroutine, ``fetch`` an ``async def``, ``rows`` an async generator, ``pipeline`` returns an
    object that is both awaitable and an async context manager. It is bound to the loop it is
    first used in (as real clients are), counts the times two tasks were inside it at once
    (``overlaps``), and records its closes."""

    def __init__(self) -> None:
        self.id = next(_ids)
        self.loop: Any = None
        self.busy = False
        self.overlaps = 0
        self.closes = 0

    def enter(self) -> None:
        loop = asyncio.get_running_loop()
        if self.loop is None:
            self.loop = loop
        elif self.loop is not loop:
            raise RuntimeError("Future attached to a different loop")
        if self.busy:
            self.overlaps += 1
        self.busy = True

    async def _run(self, key: Any) -> tuple[int, Any]:
        self.enter()
        try:
            await asyncio.sleep(0)
            return (self.id, key)
        finally:
            self.busy = False

    def command(self, key: Any) -> Any:
        return self._run(key)

    async def fetch(self, key: Any) -> tuple[int, Any]:
        return await self._run(key)

    async def rows(self, n: int) -> Any:
        self.enter()
        try:
            for i in range(n):
                await asyncio.sleep(0)
                yield (self.id, i)
        finally:
            self.busy = False

    def pipeline(self) -> FakePipeline:
        return FakePipeline(self)

    async def aclose(self) -> None:
        self.closes += 1


class FakePipeline:
    """redis.asyncio's ``Pipeline`` shape: awaitable (gives itself), an async context manager,
    fluent buffered commands, and an ``execute`` coroutine that runs on its client."""

    def __init__(self, client: AsyncFake) -> None:
        self.client = client
        self.queued: list[Any] = []

    def __await__(self) -> Any:
        return self._ready().__await__()

    async def _ready(self) -> FakePipeline:
        return self

    async def __aenter__(self) -> FakePipeline:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.queued.clear()

    def set(self, key: Any) -> FakePipeline:
        self.queued.append(key)
        return self

    async def execute(self) -> list[tuple[int, Any]]:
        results = [await self.client._run(key) for key in self.queued]
        self.queued.clear()
        return results
