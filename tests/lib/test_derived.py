"""Objects derived from a client stay inside the policy (issue 11; issue 15 item 2).

A cursor, a generator, a coroutine, or the client itself returned by a call keeps using the
instance the call ran on; each must hold that instance for as long as it is used.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import safeclients
from tests.lib.fakes import BrokenConnectionError, FakeClient
from tests.lib.threads import JOIN, in_thread

pytestmark = pytest.mark.usefixtures("call_path")


class Cursor:
    """A DB-API-like cursor: bound to its connection, runs its query there."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.rows: list[Any] = []

    def execute(self, value: Any) -> None:
        self.connection.active += 1
        try:
            if self.connection.active > 1:
                self.connection.overlaps += 1
            self.connection.last = value
            time.sleep(0)  # a round trip: lets another thread in, as a real driver does
            self.rows = [(self.connection.id, self.connection.last)]
        finally:
            self.connection.active -= 1

    def fail(self) -> None:
        raise BrokenConnectionError("connection lost")

    def fetchone(self) -> Any:
        return self.rows[0]

    def close(self) -> None:
        self.connection.cursors_closed += 1

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Connection(FakeClient):
    def __init__(self) -> None:
        super().__init__()
        self.active = 0
        self.overlaps = 0
        self.last: Any = None
        self.cursors_closed = 0

    def cursor(self) -> Cursor:
        return Cursor(self)

    def where(self, value: Any) -> Connection:  # fluent
        self.active += 1
        self.last = value
        self.active -= 1
        return self

    def rows(self, n: int) -> Iterator[tuple[int, int]]:
        for index in range(n):
            yield self.id, index

    async def fetch(self, value: Any) -> tuple[int, Any]:
        self.active += 1
        if self.active > 1:
            self.overlaps += 1
        await asyncio.sleep(0)
        self.active -= 1
        return self.id, value


def test_pooled_cursor_keeps_its_connection_until_the_block_ends() -> None:
    db = safeclients.pooled(Connection, size=2, timeout=0)
    with db.cursor() as cur:
        cur.execute("mine")
        # Another thread gets the other connection, never this one.
        other = in_thread(lambda: _query(db, "theirs"))
        mine = cur.fetchone()
        assert other[0] != mine[0] and mine[1] == "mine"
    # The block ended: its connection is free again (LIFO: the next use gets it).
    assert safeclients.stats(db).live == 2
    assert _query(db, "again")[0] == mine[0]


def _query(db: Any, value: Any) -> Any:
    with db.cursor() as cur:
        cur.execute(value)
        return cur.fetchone()


def test_pooled_cursors_from_many_threads_never_see_other_rows() -> None:
    db = safeclients.pooled(Connection, size=4, timeout=5)
    barrier = threading.Barrier(8)
    wrong: list[Any] = []

    def run(index: int) -> None:
        barrier.wait(JOIN)
        for n in range(200):
            value = (index, n)
            if _query(db, value)[1] != value:
                wrong.append(value)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN)
    assert wrong == [], f"{len(wrong)} of 1600 queries got another query's row"


def test_locked_cursor_holds_the_lock_until_closed() -> None:
    db = safeclients.locked(Connection, timeout=0.05)
    cur = db.cursor()
    cur.execute(1)
    with pytest.raises(safeclients.LockTimeout):
        in_thread(lambda: db.ping())
    assert db.ping()[0] == cur.fetchone()[0], "the same thread re-enters"
    cur.close()
    assert in_thread(lambda: db.ping())[0] >= 1


def test_cursor_released_when_garbage_collected() -> None:
    db = safeclients.pooled(Connection, size=1, timeout=0)
    cur = db.cursor()
    cur.execute(1)
    del cur
    gc.collect()
    assert db.ping()[0] >= 1, "the slot came back when the cursor died"


def test_cursor_error_counts_for_its_connection() -> None:
    db = safeclients.pooled(Connection, size=1, timeout=0)
    with pytest.raises(BrokenConnectionError):
        with db.cursor() as cur:
            first = db_id(cur)
            cur.fail()
    assert safeclients.stats(db).discarded == 1
    assert _query(db, 1)[0] != first


def db_id(cur: Any) -> int:
    cur.execute(None)
    return int(cur.fetchone()[0])


def test_cursor_used_from_another_thread_is_refused() -> None:
    db = safeclients.per_thread(Connection)
    cur = db.cursor()
    with pytest.raises(safeclients.CrossThreadUseError, match="thread"):
        in_thread(lambda: cur.execute(1))


def test_cursor_used_after_its_block_is_refused() -> None:
    db = safeclients.pooled(Connection)
    with db.cursor() as cur:
        cur.execute(1)
    assert cur.rows, "reading an attribute after the block is harmless"
    with pytest.raises(safeclients.OutlivedUseError):
        cur.execute(2)


def test_guarded_sees_a_use_through_a_cursor() -> None:
    db = safeclients.guarded(Connection, on_conflict="count")
    with db.cursor() as cur:
        cur.execute(1)
        in_thread(lambda: db.ping())
    # One conflict per use; the generic path makes two (the lookup, then the call).
    assert safeclients.stats(db).conflicts >= 1


def test_fluent_call_returns_the_proxy() -> None:
    db = safeclients.pooled(Connection, size=1, timeout=0)
    chained = db.where(1).where(2)
    assert safeclients.is_proxy(chained) and chained is db
    assert in_thread(lambda: db.ping())[0] >= 1, "nothing held after a fluent chain"


def test_generator_holds_its_instance_and_stays_in_its_thread() -> None:
    db = safeclients.pooled(Connection, size=1, timeout=0)
    rows = db.rows(3)
    assert next(rows)[1] == 0
    with pytest.raises(safeclients.PoolTimeout):
        in_thread(lambda: db.ping())
    with pytest.raises(safeclients.CrossThreadUseError):
        in_thread(lambda: next(rows))
    assert [index for _, index in rows] == [1, 2]
    assert in_thread(lambda: db.ping())[0] >= 1, "exhausted: the instance came back"


def test_eight_awaits_on_a_pool_of_four_never_share_an_instance() -> None:
    db = safeclients.pooled(Connection, size=4, timeout=5)

    async def main() -> list[tuple[int, Any]]:
        return await asyncio.gather(*(db.fetch(n) for n in range(8)))

    results = asyncio.run(main())
    assert [value for _, value in results] == list(range(8))
    stats = safeclients.stats(db)
    assert stats.created <= 4
    with safeclients.checkout(db) as one:
        assert one.overlaps == 0


def test_locked_refuses_an_async_method() -> None:
    db = safeclients.locked(Connection)

    async def main() -> Any:
        return await db.fetch(1)

    with pytest.raises(safeclients.AsyncUseError, match="per_loop"):
        asyncio.run(main())


def test_calls_inside_a_cursor_block_reach_the_cursors_connection() -> None:
    """`db.commit()` inside `with db.cursor() as cur:` must commit on the cursor's connection."""
    db = safeclients.pooled(Connection, size=4, timeout=0)
    with db.cursor() as cur:
        cur.execute(1)
        mine = cur.fetchone()[0]
        assert db.ping()[0] == mine, "the thread's other calls use the pinned connection"
        with db.cursor() as inner:  # a second cursor joins the pin
            inner.execute(2)
            assert inner.fetchone()[0] == mine
        assert db.ping()[0] == mine, "the outer cursor still pins it"
        assert in_thread(lambda: db.ping())[0] != mine, "other threads never get it"
    assert safeclients.stats(db).live >= 1
    with safeclients.checkout(db) as conn:
        assert conn.id == mine, "given back once, when the last cursor ended"


def test_a_result_that_is_another_proxy_is_returned_as_it_is() -> None:
    made: list[int] = []

    def inner_factory():  # type: ignore[no-untyped-def]  # no annotation: type unknown
        made.append(1)
        return FakeClient()

    inner = safeclients.per_thread(inner_factory)

    class Holder(FakeClient):
        def other(self) -> Any:
            return inner

    outer = safeclients.pooled(Holder, size=1, timeout=0)
    assert outer.other() is inner
    assert made == [], "looking at the result created the other proxy's client"
    assert in_thread(lambda: outer.ping())[0] >= 1, "the outer instance was given back"


def test_per_thread_async_errors_discard_without_holding() -> None:
    class AsyncConn(FakeClient):
        async def lost(self) -> None:
            raise BrokenConnectionError("lost while awaited")

    db = safeclients.per_thread(AsyncConn)
    first = db.ping()[0]

    async def main() -> None:
        with pytest.raises(BrokenConnectionError):
            await db.lost()

    asyncio.run(main())
    assert db.ping()[0] != first, "an error while awaiting still discards the instance"


class MultiCallable:
    """What gRPC's ``channel.unary_unary(path)`` returns: bound to its channel, and called."""

    def __init__(self, channel: Channel, path: str) -> None:
        self.channel = channel
        self.path = path

    def __call__(self, request: Any) -> tuple[int, str, Any]:
        return self.channel.id, self.path, request


class Channel(FakeClient):
    def unary_unary(self, path: str) -> MultiCallable:
        return MultiCallable(self, path)


@pytest.mark.parametrize("policy", ["per_thread", "locked", "pooled", "per_process"])
def test_a_callable_derived_object_is_called_through_its_hold(policy: str) -> None:
    proxy = getattr(safeclients, policy)(Channel)
    echo = proxy.unary_unary("/test.Echo/Echo")
    assert echo(b"hi")[1:] == ("/test.Echo/Echo", b"hi")
    result: dict[str, BaseException] = {}

    def from_another_thread(call: Any) -> None:
        try:
            call(b"there")
        except BaseException as exc:  # handed back to the test thread
            result["error"] = exc

    thread = threading.Thread(target=from_another_thread, args=(echo,))
    thread.start()
    thread.join(30)
    assert isinstance(result.get("error"), safeclients.CrossThreadUseError)
    del echo
    safeclients.dispose(proxy)


def test_a_derived_object_that_is_not_callable_stays_not_callable() -> None:
    proxy = safeclients.pooled(Connection, size=1)
    cursor = proxy.cursor()
    assert not callable(cursor)
    cursor.close()
