"""``per_loop`` with real async clients: ``redis.asyncio`` against a real ``redis-server`` and
``httpx.AsyncClient`` against a local HTTP/1.1 keep-alive server.

Two shapes of "several loops in one process", each with many tasks per loop:

* ``threads``: 8 threads, each running its own loop (``asyncio.run``), released together by a
  barrier, 3 rounds of 20 tasks each;
* ``sequential``: ``asyncio.run()`` 50 times in a row, 20 tasks each (a loop per task/test).

Every operation checks its answer (a unique key/value per task). The unwrapped module-global
client fails ("Event loop is closed", "... is bound to a different event loop"); ``per_loop``
gives 0 errors, 0 wrong answers, and after the loops end the server holds 0 of its connections
(redis ``CLIENT LIST``; the HTTP server's count of open connections).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import safeclients
from examples.support.backends import Redis
from tests.green.conftest import CountingHTTPServer

pytestmark = pytest.mark.integration
redis_asyncio = pytest.importorskip("redis.asyncio")
httpx = pytest.importorskip("httpx")

THREADS = 8
ROUNDS = 3
TASKS = 20
RUNS = 50
JOIN = 30.0
OP_TIMEOUT = 5.0  # seconds per operation: the unwrapped global can leave a task waiting forever


class Tally:
    """Outcomes across threads: ok, wrong, and errors by type (first message kept)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # guards the counters (tasks of 8 threads add to them)
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, str] = {}

    def add(self, outcome: str, example: str = "") -> None:
        with self.lock:
            self.counts[outcome] += 1
            self.examples.setdefault(outcome, example)

    @property
    def errors(self) -> int:
        return sum(n for k, n in self.counts.items() if k not in ("ok", "wrong"))

    def __repr__(self) -> str:
        return f"{dict(self.counts)} e.g. {self.examples}"


Op = Callable[[Any, str], Awaitable[bool]]


async def redis_op(client: Any, token: str) -> bool:
    await client.set(token, token)
    return bool(await client.get(token) == token.encode())


async def http_op(client: Any, token: str) -> bool:
    response = await client.get("/echo", params={"v": token})
    return bool(response.status_code == 200 and response.text == token)


async def one_loop(client: Any, op: Op, tally: Tally, rounds: int) -> None:
    async def task() -> None:
        token = uuid.uuid4().hex
        try:
            ok = await asyncio.wait_for(op(client, token), OP_TIMEOUT)
        except Exception as exc:
            tally.add(type(exc).__name__, str(exc)[:200])
        else:
            tally.add("ok" if ok else "wrong", token)

    for _ in range(rounds):
        await asyncio.gather(*(task() for _ in range(TASKS)))


def run_shape(shape: str, client: Any, op: Op) -> Tally:
    tally = Tally()
    if shape == "sequential":
        for _ in range(RUNS):
            asyncio.run(one_loop(client, op, tally, 1))
        return tally
    barrier = threading.Barrier(THREADS, timeout=JOIN)

    def thread() -> None:
        async def main() -> None:
            barrier.wait()
            await one_loop(client, op, tally, ROUNDS)

        try:
            asyncio.run(main())
        except Exception as exc:  # the shared client can break the loop itself
            tally.add(type(exc).__name__, str(exc)[:200])

    # Daemon threads: a loop that the unwrapped global wedged must not hold the interpreter.
    threads = [
        threading.Thread(target=thread, name=f"loop-{i}", daemon=True) for i in range(THREADS)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + JOIN
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    for t in threads:
        if t.is_alive():
            tally.add("hung loop thread", t.name)
    return tally


def expected_ops(shape: str) -> int:
    return RUNS * TASKS if shape == "sequential" else THREADS * ROUNDS * TASKS


def loops_of(shape: str) -> int:
    return RUNS if shape == "sequential" else THREADS


SHAPES = ("threads", "sequential")


@pytest.mark.parametrize("shape", SHAPES)
def test_redis_unwrapped_global_fails(shape: str, redis_server: Redis) -> None:
    client = redis_asyncio.Redis(port=redis_server.port, socket_timeout=5)
    tally = run_shape(shape, client, redis_op)
    print(f"\n| redis.asyncio | {shape} | unwrapped global | {tally} |")
    assert tally.errors + tally.counts["wrong"] > 0, (
        f"one redis.asyncio.Redis shared by {loops_of(shape)} loops never failed: {tally}"
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_redis_per_loop(shape: str, redis_server: Redis) -> None:
    name = f"per-loop-{uuid.uuid4().hex[:8]}"  # counted apart from the unwrapped runs' leftovers

    @safeclients.per_loop
    def client() -> redis_asyncio.Redis:
        return redis_asyncio.Redis(port=redis_server.port, socket_timeout=5, client_name=name)

    tally = run_shape(shape, client, redis_op)
    assert tally.counts["ok"] == expected_ops(shape) and tally.errors == 0, tally
    assert tally.counts["wrong"] == 0, tally
    left = redis_server.wait_connection_count(0, name)
    stats = safeclients.stats(client)
    print(f"\n| redis.asyncio | {shape} | per_loop | {tally} | open after: {left} | {stats} |")
    assert left == 0, f"{left} redis connections left open after the loops: {stats}"
    assert stats.created == loops_of(shape) and stats.closed == stats.created, stats
    assert stats.live == 0, stats


@pytest.mark.parametrize("shape", SHAPES)
def test_httpx_unwrapped_global_fails(shape: str, http_server: CountingHTTPServer) -> None:
    client = httpx.AsyncClient(base_url=http_server.url, timeout=2.0)  # it may hang: short
    tally = run_shape(shape, client, http_op)
    print(f"\n| httpx | {shape} | unwrapped global | {tally} |")
    assert tally.errors + tally.counts["wrong"] > 0, (
        f"one httpx.AsyncClient shared by {loops_of(shape)} loops never failed: {tally}"
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_httpx_per_loop(shape: str, http_server: CountingHTTPServer) -> None:
    @safeclients.per_loop
    def client() -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=http_server.url, timeout=5.0)

    tally = run_shape(shape, client, http_op)
    assert tally.counts["ok"] == expected_ops(shape) and tally.errors == 0, tally
    assert tally.counts["wrong"] == 0, tally
    left = http_server.wait_open(0)
    stats = safeclients.stats(client)
    print(f"\n| httpx | {shape} | per_loop | {tally} | open after: {left} | {stats} |")
    assert left == 0, f"{left} HTTP connections left open after the loops: {stats}"
    assert http_server.total_connections > 0
    assert stats.created == loops_of(shape) and stats.closed == stats.created, stats
    assert stats.live == 0, stats
