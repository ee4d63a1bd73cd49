"""redis.asyncio under ``pooled`` on a real Redis: each instance belongs to its loop.

Two threads each run an event loop on one ``pooled`` proxy, at once: a connection opened in one
loop is never handed to a task of the other ("Future attached to a different loop", "Event
loop is closed"); an idle instance of one loop gives its slot to the other by being closed in
its own loop. The async-factory form (``async def`` that pings before handing the client out)
is awaited in the loop that uses it.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import safeclients
from examples.support.backends.redis import Redis

redis_asyncio = pytest.importorskip("redis.asyncio")

pytestmark = pytest.mark.integration

WAIT = 30.0  # seconds any one step may take
ROUNDS = 10
TASKS = 16


def _forms(server: Redis) -> dict[str, Any]:
    def sync_factory() -> Any:
        return redis_asyncio.Redis(host=server.host, port=server.port, socket_timeout=WAIT)

    async def async_factory() -> Any:
        client = redis_asyncio.Redis(host=server.host, port=server.port, socket_timeout=WAIT)
        await client.ping()  # a warm connection before the first use
        return client

    return {"sync": sync_factory, "async": async_factory}


@pytest.mark.parametrize("form", ["sync", "async"])
def test_two_loops_on_one_pool_never_share_a_connection(redis_server: Redis, form: str) -> None:
    proxy = safeclients.pooled(_forms(redis_server)[form], size=3, timeout=WAIT)
    barrier = threading.Barrier(2, timeout=WAIT)
    errors: list[BaseException] = []

    def run(side: int) -> None:
        async def request(n: int) -> None:
            key = f"loops:{form}:{side}:{n}"
            await proxy.set(key, key)
            assert await proxy.get(key) == key.encode(), "another request's value"

        async def main() -> None:
            for _ in range(ROUNDS):
                barrier.wait()  # both loops busy at once
                await asyncio.gather(*(request(n) for n in range(TASKS)))

        try:
            asyncio.run(main())
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(side,)) for side in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 2)
    assert not any(thread.is_alive() for thread in threads), "a loop thread did not finish"
    assert not errors, errors
    stats = safeclients.stats(proxy)
    assert stats.live == 0 and stats.closed == stats.created and stats.close_failed == 0, stats
