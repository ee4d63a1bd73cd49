"""asyncpg on a real PostgreSQL (the ASYNCPG_CONNECTION profile): served by a pool per loop,
and its misuse error is never taken for a dead connection.

One asyncpg ``Connection`` serves one task at a time; a second task gets ``InterfaceError``
"another operation is in progress". Under ``per_loop`` a bare connection is the loop's one
instance for every task: the misuse error reaches the task that caused it, and the connection is
*kept* (the profile's ``disconnect`` judgement), so the other task's query finishes on it. The
form the profile and docs/green.md recommend, ``per_loop(lambda: asyncpg.create_pool(dsn))``,
gives each call a connection of its own: every concurrent task answered right, in every loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import safeclients
from examples.support.backends.postgres import PostgreSQL

asyncpg = pytest.importorskip("asyncpg")

pytestmark = pytest.mark.integration

WAIT = 30.0  # seconds any one awaited step may take
TASKS = 32
ROUNDS = 3


def _dsn(server: PostgreSQL) -> dict[str, Any]:
    p = server.params
    return {
        "host": p["host"],
        "port": p["port"],
        "user": p["user"],
        "password": p["password"],
        "database": p["dbname"],
        "timeout": WAIT,
    }


def test_a_bare_connection_misused_by_two_tasks_is_kept(postgresql: PostgreSQL) -> None:
    dsn = _dsn(postgresql)

    @safeclients.per_loop
    async def db() -> asyncpg.Connection:
        return await asyncpg.connect(**dsn)

    async def main() -> tuple[Any, list[Any], int]:
        slow = asyncio.ensure_future(db.fetchval("SELECT pg_sleep(0.3)::text || 'slow'"))
        await asyncio.sleep(0.05)  # the slow query is on the wire
        intruder = await asyncio.gather(db.fetchval("SELECT 1"), return_exceptions=True)
        first = await asyncio.wait_for(slow, WAIT)
        after = await asyncio.wait_for(db.fetchval("SELECT 2"), WAIT)
        return first, intruder, after

    first, [intruder], after = asyncio.run(main())
    assert isinstance(intruder, asyncpg.exceptions.InterfaceError), intruder
    assert "another operation is in progress" in str(intruder)
    assert first == "slow", "the first task's query finished on the kept connection"
    assert after == 2
    stats = safeclients.stats(db)
    assert (stats.created, stats.discarded, stats.closed) == (1, 0, 1), (
        f"the misuse must not discard the loop's connection: {stats}"
    )


def test_a_pool_per_loop_serves_every_concurrent_task(postgresql: PostgreSQL) -> None:
    dsn = _dsn(postgresql)
    pool = safeclients.per_loop(lambda: asyncpg.create_pool(min_size=1, max_size=4, **dsn))

    async def request(n: int) -> Any:
        return await pool.fetchval("SELECT $1::int * 2", n)

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(request(n) for n in range(TASKS))))

    for _ in range(ROUNDS):  # a new loop each round, as repeated asyncio.run()
        assert asyncio.run(main()) == [2 * n for n in range(TASKS)]
    stats = safeclients.stats(pool)
    assert (stats.created, stats.closed, stats.discarded, stats.live) == (ROUNDS, ROUNDS, 0, 0), (
        f"one pool per loop, each closed (awaited) inside its loop: {stats}"
    )


def test_a_transaction_on_one_of_the_loops_pool_connections(postgresql: PostgreSQL) -> None:
    # docs/green.md's block form: `async with db.acquire() as conn, conn.transaction():`.
    dsn = _dsn(postgresql)
    pool = safeclients.per_loop(lambda: asyncpg.create_pool(min_size=1, max_size=4, **dsn))

    async def unit(n: int) -> Any:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("CREATE TEMP TABLE IF NOT EXISTS t (v int) ON COMMIT DROP")
            await conn.execute("INSERT INTO t VALUES ($1)", n)
            return await conn.fetchval("SELECT sum(v) FROM t")

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(unit(n) for n in range(8))))

    assert asyncio.run(main()) == list(range(8)), "each block ran on one connection"
    stats = safeclients.stats(pool)
    assert (stats.created, stats.closed, stats.discarded) == (1, 1, 0), stats


def test_pooled_awaits_an_async_factory_in_the_loop_that_uses_it(postgresql: PostgreSQL) -> None:
    # The form: `pooled` around `asyncpg.connect`, an async factory (it used to be
    # refused); each task gets a connection of its own, so no "another operation is in
    # progress"; each connection is made, used and closed (awaited) in one loop.
    dsn = _dsn(postgresql)

    @safeclients.pooled(size=4, timeout=WAIT)
    async def db() -> asyncpg.Connection:
        return await asyncpg.connect(**dsn)

    async def main() -> list[Any]:
        return list(
            await asyncio.gather(*(db.fetchval("SELECT $1::int * 2", n) for n in range(TASKS)))
        )

    for _ in range(ROUNDS):
        assert asyncio.run(main()) == [2 * n for n in range(TASKS)]
    stats = safeclients.stats(db)
    assert stats.created <= 4 * ROUNDS and stats.live == 0 and stats.discarded == 0, stats
    assert stats.closed == stats.created, f"every connection closed inside its loop: {stats}"


def test_pooled_starts_a_pool_it_is_given_unstarted(postgresql: PostgreSQL) -> None:
    # `pooled(lambda: asyncpg.create_pool(dsn))` used to hand out an uninitialised pool
    # ("pool is not initialized"): the awaitable the factory returns is awaited first.
    dsn = _dsn(postgresql)
    pool = safeclients.pooled(
        lambda: asyncpg.create_pool(min_size=1, max_size=4, **dsn), size=1, timeout=WAIT
    )

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(pool.fetchval("SELECT $1::int", n) for n in range(8))))

    assert asyncio.run(main()) == list(range(8))
    stats = safeclients.stats(pool)
    assert (stats.created, stats.closed, stats.live) == (1, 1, 0), stats


def test_one_dead_connection_does_not_retire_the_loops_pool(postgresql: PostgreSQL) -> None:
    # Found by the ASGI proof (tests/realclients/test_asgi.py): a query whose connection the
    # server terminated raised ConnectionDoesNotExistError, per_loop took it for the *pool's*
    # death and closed the loop's pool under the other tasks ("pool is closing", 32 of 76
    # requests). The pool replaces a closed connection itself at its next acquire.
    dsn = _dsn(postgresql)
    pool = safeclients.per_loop(lambda: asyncpg.create_pool(min_size=2, max_size=4, **dsn))

    async def main() -> tuple[BaseException | None, Any]:
        admin = await asyncpg.connect(**dsn)
        try:
            doomed = asyncio.ensure_future(pool.fetchval("SELECT 'doomed' || pg_sleep(30)"))
            pid = None
            for _ in range(600):  # the server's view of the query, polled (bounded)
                pid = await admin.fetchval(
                    "SELECT pid FROM pg_stat_activity WHERE query LIKE 'SELECT ''doomed''%'"
                )
                if pid is not None or doomed.done():
                    break
                await asyncio.sleep(0.01)
            assert pid is not None, "the doomed query never showed in pg_stat_activity"
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
            [failed] = await asyncio.wait_for(asyncio.gather(doomed, return_exceptions=True), WAIT)
            after = await asyncio.wait_for(pool.fetchval("SELECT 2"), WAIT)
            return failed, after
        finally:
            await admin.close()

    failed, after = asyncio.run(main())
    assert isinstance(failed, (asyncpg.PostgresError, asyncpg.InterfaceError)), failed
    assert after == 2
    stats = safeclients.stats(pool)
    assert (stats.created, stats.discarded, stats.closed) == (1, 0, 1), (
        f"one dead connection of the pool must not retire the loop's pool: {stats}"
    )


def test_a_bare_connection_keeps_another_tasks_write_out_of_a_transaction(
    postgresql: PostgreSQL,
) -> None:
    # Found by the ASGI proof: a bare connection under per_loop is the loop's one connection;
    # another task's statement made inside a task's transaction block would run inside that
    # transaction and be rolled back with it while its caller was told it succeeded. The
    # profile says the connection serves one task at a time (one_task): refused, named.
    dsn = _dsn(postgresql)

    @safeclients.per_loop
    async def db() -> asyncpg.Connection:
        return await asyncpg.connect(**dsn)

    async def main() -> tuple[BaseException | None, list[int]]:
        await db.execute("CREATE TEMP TABLE t (v int)")  # the loop's one connection's own
        in_transaction, written = asyncio.Event(), asyncio.Event()

        async def rolled_back() -> None:
            async with db.transaction():
                await db.execute("INSERT INTO t VALUES (1)")
                in_transaction.set()
                await asyncio.wait_for(written.wait(), WAIT)
                raise _Rollback

        async def own_write() -> None:
            await asyncio.wait_for(in_transaction.wait(), WAIT)
            try:
                await db.execute("INSERT INTO t VALUES (2)")  # no transaction of its own
            finally:
                written.set()

        outcomes = await asyncio.gather(rolled_back(), own_write(), return_exceptions=True)
        assert isinstance(outcomes[0], _Rollback), outcomes[0]
        rows = [r["v"] for r in await db.fetch("SELECT v FROM t ORDER BY v")]
        return outcomes[1], rows

    refused, rows = asyncio.run(main())
    assert isinstance(refused, safeclients.ConcurrentUseError), refused  # refused, named
    assert refused is not None or rows == [2], (
        f"the second task's write was told it succeeded, yet it is gone (rows {rows}): it ran "
        f"inside the first task's transaction and was rolled back with it"
    )


class _Rollback(Exception):
    """Raised inside the first task's transaction block to roll it back."""
