"""``pooled`` around ``redis.asyncio.Redis`` inside one event loop (``python -m
benchmarks.loop_pool``).

redis.asyncio's commands are plain functions that return coroutines: with every pooled instance
in use, a call used to wait for one *in the loop's thread*, freezing every task until
``PoolTimeout``. This script starts a real ``redis-server`` on a free loopback port and, in one
loop, runs ``REQUESTS`` tasks at ``CONCURRENCY`` (a semaphore), each ``await r.set(k, v)`` then
``await r.get(k)`` through ``pooled(size=SIZE, timeout=TIMEOUT)``, while a ticker task records the
longest gap between its wake-ups (how long the loop was frozen). It prints: right answers, errors
by type, wall time, median and p99 request latency, the longest loop stall, and the instances
created. Each round is bounded (``asyncio.wait_for``); the server is stopped in ``finally``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from collections import Counter
from typing import Any

import redis.asyncio as redis_asyncio

import safeclients
from examples.support.backends.redis import Redis

# LOOP_POOL_REQUESTS / LOOP_POOL_ROUNDS shrink a run (a version that freezes the loop waits
# TIMEOUT per call: 1,000 requests would take half an hour).
REQUESTS = int(os.environ.get("LOOP_POOL_REQUESTS", "1000"))
ROUNDS = int(os.environ.get("LOOP_POOL_ROUNDS", "3"))
CONCURRENCY = 32
SIZE = 4
TIMEOUT = 2.0
ROUND_LIMIT = 120.0


async def _round(port: int) -> dict[str, Any]:
    proxy = safeclients.pooled(
        lambda: redis_asyncio.Redis(port=port, socket_timeout=5), size=SIZE, timeout=TIMEOUT
    )
    gate = asyncio.Semaphore(CONCURRENCY)
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    right = 0
    stall = [0.0]
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            stall[0] = max(stall[0], now - last)
            last = now

    async def request(i: int) -> None:
        nonlocal right
        async with gate:
            start = time.perf_counter()
            try:
                await proxy.set(f"k{i}", str(i))
                value = await proxy.get(f"k{i}")
                right += value == str(i).encode()
            except Exception as exc:  # counted by type: the figure is the point
                errors[type(exc).__name__] += 1
            latencies.append(time.perf_counter() - start)

    tick = asyncio.ensure_future(ticker())
    start = time.perf_counter()
    try:
        await asyncio.gather(*(request(i) for i in range(REQUESTS)))
    finally:
        wall = time.perf_counter() - start
        stop.set()
        await tick
    created = safeclients.stats(proxy).created
    safeclients.dispose(proxy, final=True)  # the closes are awaited in this loop
    for _ in range(1000):
        if safeclients.stats(proxy).live == 0 and not proxy_closing(proxy):
            break
        await asyncio.sleep(0.001)
    latencies.sort()
    return {
        "right": right,
        "errors": dict(errors),
        "wall_s": round(wall, 3),
        "median_ms": round(statistics.median(latencies) * 1e3, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1e3, 2),
        "max_loop_stall_ms": round(stall[0] * 1e3, 1),
        "created": created,
    }


def proxy_closing(proxy: Any) -> bool:
    """Whether async closes of the proxy's instances are still under way."""
    from safeclients._proxy import policy_of

    return bool(getattr(policy_of(proxy), "_async_closes", ()))


def main() -> None:
    server = Redis().start()
    try:
        for n in range(ROUNDS):
            result = asyncio.run(asyncio.wait_for(_round(server.port), ROUND_LIMIT))
            print(f"round {n + 1}: {result}", flush=True)
    finally:
        server.stop()
    print(f"safeclients from {safeclients.__file__}", file=sys.stderr)


if __name__ == "__main__":
    main()
