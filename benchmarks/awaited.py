"""The cost of an awaited call through ``per_loop`` (``python -m benchmarks.awaited``).

One event loop, a do-nothing async client: ``await client.get(i)`` on the raw client and through
a ``per_loop`` proxy, interleaved, 7 rounds of 20,000 calls; the minimum of each is printed with
the difference. A stand-alone script (not a row of ``python -m benchmarks``): the per-call table
there times synchronous calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import safeclients

ROUNDS = 7
CALLS = 20_000


class AsyncClient:
    async def get(self, key: int) -> int:
        return key

    async def aclose(self) -> None:
        pass


@safeclients.per_loop
def proxied() -> AsyncClient:
    return AsyncClient()


async def _time(call: Callable[[int], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    for n in range(CALLS):
        await call(n)
    return (time.perf_counter() - start) / CALLS * 1e9


async def _main() -> None:
    raw = AsyncClient()
    await proxied.get(0)
    raw_ns: list[float] = []
    proxy_ns: list[float] = []
    for _ in range(ROUNDS):
        raw_ns.append(await _time(raw.get))
        proxy_ns.append(await _time(proxied.get))
    print(
        f"await raw {min(raw_ns):.0f} ns, through per_loop {min(proxy_ns):.0f} ns: "
        f"{min(proxy_ns) - min(raw_ns):.0f} ns more per call"
    )


if __name__ == "__main__":
    asyncio.run(_main())
