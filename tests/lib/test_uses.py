"""Uses that outlive a call (``safeclients._uses``): pins, holds, blocks.

Each test names the rule it checks; "held" is shown the way a user would see it: another thread
cannot get the instance (a pool of one with ``timeout=0`` says ``PoolTimeout``; a locked proxy
with ``timeout=0`` says ``LockTimeout``), and it can again once the use has ended.
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import safeclients
from tests.lib.fakes import BrokenConnectionError, FakeClient
from tests.lib.forking import FORKS, run_in_child
from tests.lib.test_derived import Connection, Cursor
from tests.lib.threads import JOIN, in_thread

pytestmark = pytest.mark.usefixtures("call_path")


def sqlite_db() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:", check_same_thread=False)
    db.execute("CREATE TABLE t (x INTEGER)")
    db.executemany("INSERT INTO t VALUES (?)", [(1,), (2,), (3,)])
    db.commit()
    return db


def taken(proxy: Any) -> bool:
    """Whether another thread is refused the proxy's instance right now (``str()`` is a use)."""
    try:
        in_thread(lambda: str(proxy))
    except (safeclients.PoolTimeout, safeclients.LockTimeout):
        return True
    return False


ONE = {
    "pooled": lambda factory: safeclients.pooled(factory, size=1, timeout=0),
    "locked": lambda factory: safeclients.locked(factory, timeout=0),
}


# -- 1: a derived object keeps its instance, however the user reaches it ------------------------


@pytest.mark.parametrize("policy", sorted(ONE))
def test_real_sqlite3_cursor_iteration_keeps_the_instance(policy: str) -> None:
    db = ONE[policy](sqlite_db)
    cur = db.cursor()
    assert cur.execute("SELECT x FROM t ORDER BY x") is cur, "a fluent return is the wrapped cursor"
    rows = []
    for row in cur:
        assert taken(db), "iterating: the cursor's instance is still held"
        rows.append(row)
    assert rows == [(1,), (2,), (3,)]
    cur.execute("SELECT x FROM t ORDER BY x")
    assert next(cur) == (1,)
    assert taken(db)
    cur.close()
    assert not taken(db), "closed: the instance is back"
    with pytest.raises(safeclients.OutlivedUseError):
        next(cur)


@pytest.mark.parametrize("policy", sorted(ONE))
def test_real_sqlite3_rows_of_db_execute_keep_the_instance(policy: str) -> None:
    db = ONE[policy](sqlite_db)
    seen = []
    for row in db.execute("SELECT x FROM t ORDER BY x"):
        seen.append((row, taken(db)))
    assert seen == [((1,), True), ((2,), True), ((3,), True)]
    gc.collect()
    assert not taken(db), "the cursor died with the loop: the instance is back"


class Pipeline:
    """redis-py-like: a fluent builder bound to its client, run by execute()."""

    def __init__(self, client: PipelineClient) -> None:
        self.client = client
        self.commands: list[Any] = []

    def set(self, key: str, value: Any) -> Pipeline:
        self.commands.append((key, value))
        return self

    def execute(self) -> list[Any]:
        self.client.store.update(self.commands)
        done, self.commands = self.commands, []
        return [True for _ in done]

    def scan(self) -> Iterator[str]:
        yield from sorted(self.client.store)

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.commands = []


class PipelineClient(FakeClient):
    def __init__(self) -> None:
        super().__init__()
        self.store: dict[str, Any] = {}

    def pipeline(self) -> Pipeline:
        return Pipeline(self)


@pytest.mark.parametrize("policy", sorted(ONE))
def test_fluent_pipeline_and_its_generator_keep_the_instance(policy: str) -> None:
    r = ONE[policy](PipelineClient)
    pipe = r.pipeline().set("a", 1).set("b", 2)
    assert safeclients.is_proxy(pipe) is False and type(pipe).__name__.startswith("derived_")
    assert taken(r)
    assert pipe.execute() == [True, True]
    keys = pipe.scan()
    del pipe
    gc.collect()
    assert taken(r), "the generator a derived method returned still holds the instance"
    assert list(keys) == ["a", "b"]
    assert not taken(r), "exhausted: the instance is back"


@pytest.mark.parametrize("policy", sorted(ONE))
def test_with_cursor_block_keeps_the_instance_and_refuses_use_after(policy: str) -> None:
    db = ONE[policy](Connection)
    with db.cursor() as cur:
        cur.execute(1)
        assert taken(db)
    assert not taken(db)
    with pytest.raises(safeclients.OutlivedUseError):
        cur.execute(2)


# -- 2: another thread never corrupts the policy ----------------------------------------------


@pytest.mark.parametrize("policy", sorted(ONE))
def test_close_from_another_thread_is_refused(policy: str) -> None:
    db = ONE[policy](Connection)
    cur = db.cursor()
    with pytest.raises(safeclients.CrossThreadUseError, match="thread"):
        in_thread(cur.close)
    assert taken(db), "the refused close left the cursor and its instance held"
    cur.close()
    assert not taken(db)


@pytest.mark.parametrize("policy", sorted(ONE))
def test_collected_in_another_thread_releases_the_hold(policy: str) -> None:
    db = ONE[policy](Connection)
    box: list[Any] = [in_thread(db.cursor)]  # made (and held) by a thread that has ended
    assert taken(db)

    def drop() -> None:
        box.clear()
        gc.collect()

    dropper = threading.Thread(target=drop)
    dropper.start()
    dropper.join(JOIN)
    assert not taken(db), "collected elsewhere: never left locked, never a lost slot"
    assert db.ping()[0] >= 1
    assert safeclients.stats(db).live == 1


# -- 3: decided per result -------------------------------------------------------------------


class Result:
    def __init__(self, owner: Any = None) -> None:
        self.owner = owner


class Maker(FakeClient):
    def make(self, bound: bool) -> Result:
        return Result(self if bound else None)


def test_bound_is_decided_for_each_result_not_per_type() -> None:
    db = safeclients.pooled(Maker, size=1, timeout=0)
    free = db.make(False)
    assert type(free) is Result, "refers to nothing: returned as it is"
    bound = db.make(True)
    assert type(bound) is not Result, "same type, but this one refers to the instance"
    assert taken(db)
    del bound
    gc.collect()
    assert not taken(db)


# -- 4: across a fork -------------------------------------------------------------------------


@pytest.mark.parametrize("fork", sorted(FORKS))
@pytest.mark.parametrize("policy", ["pooled", "locked", "per_thread"])
def test_use_begun_before_a_fork_ended_in_the_child(fork: str, policy: str) -> None:
    made = {
        "pooled": lambda: safeclients.pooled(Connection, size=1, timeout=0),
        "locked": lambda: safeclients.locked(Connection, timeout=0),
        "per_thread": lambda: safeclients.per_thread(Connection),
    }[policy]
    db = made()
    cur = db.cursor()
    parent_conn = cur.connection

    def child() -> Any:
        cur.close()
        gc.collect()
        before = safeclients.stats(db)
        fresh = db.ping()[0] != parent_conn.id
        after = safeclients.stats(db)
        return [parent_conn.close_calls, before.live, before.closed, fresh, after.live]

    # The child closed nothing of the parent's, counted nothing negative, and made its own.
    assert run_in_child(FORKS[fork], child) == [0, 0, 0, True, 1]
    assert parent_conn.close_calls == 0
    cur.close()
    assert safeclients.stats(db).live == 1


# -- 5: health never retires under an open use -------------------------------------------------


def test_per_thread_max_lifetime_never_retires_under_an_open_cursor() -> None:
    db = safeclients.per_thread(Connection, max_lifetime=0)
    cur = db.cursor()
    mine = cur.connection
    assert db.ping()[0] == mine.id, "max_lifetime=0 is due at once, but a cursor is open"
    cur.close()
    assert db.ping()[0] != mine.id, "the cursor ended: now it is retired"


def test_pooled_max_idle_never_retires_the_pinned_instance() -> None:
    db = safeclients.pooled(Connection, size=2, max_idle=0)
    with safeclients.checkout(db) as conn:
        assert db.ping()[0] == conn.id
        assert db.ping()[0] == conn.id


# -- 6: blocks ---------------------------------------------------------------------------------


class ClosingSession(FakeClient):
    """PyMySQL-like: its own __exit__ closes it."""

    def __init__(self) -> None:
        super().__init__()
        self.open = True

    def __enter__(self) -> ClosingSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.open = False

    def close(self) -> None:
        if not self.open:
            raise RuntimeError("Already closed")
        super().close()
        self.open = False


@pytest.mark.parametrize("make", [safeclients.pooled, safeclients.per_thread])
def test_with_block_runs_every_call_on_one_instance(make: Callable[..., Any]) -> None:
    db = make(ClosingSession)
    with db as session:
        first = db.ping()[0]
        assert db.whoami()[0] == first == session.id
    assert db.ping()[0] != first, "its __exit__ closed it: never handed out again"
    stats = safeclients.stats(db)
    assert (stats.discarded, stats.close_failed) == (1, 0), stats


def test_checkout_keeps_its_instance_when_a_cursor_closes_inside() -> None:
    db = safeclients.pooled(Connection, size=1, timeout=0)
    with safeclients.checkout(db) as conn:
        cur = db.cursor()
        assert cur.connection is conn
        cur.close()
        assert taken(db), "the cursor closed, the block still holds its instance"
        assert db.ping()[0] == conn.id
    assert not taken(db)


# -- 7: pins are resolved at call time ---------------------------------------------------------


def test_bound_method_kept_earlier_runs_on_the_cursors_connection() -> None:
    db = safeclients.pooled(Connection, size=2)
    whoami = db.whoami
    in_thread(lambda: [db.ping() for _ in range(2)])
    cur = db.cursor()
    assert whoami()[0] == cur.connection.id
    cur.close()


# -- 8: contexts, not threads -------------------------------------------------------------------


def test_two_tasks_of_one_thread_never_share_a_pinned_instance() -> None:
    db = safeclients.pooled(Connection, size=2, timeout=5)
    seen: dict[str, int] = {}

    async def first() -> None:
        cur = db.cursor()
        seen["cursor"] = cur.connection.id
        seen["first"] = db.ping()[0]
        # A task made here starts with a copy of this context (and its pin): it must not use it.
        seen["child"] = await asyncio.create_task(other())
        seen["thread"] = await asyncio.to_thread(lambda: db.ping()[0])
        cur.close()

    async def other() -> int:
        return int(db.ping()[0])

    asyncio.run(asyncio.wait_for(first(), JOIN))
    assert seen["first"] == seen["cursor"]
    assert seen["child"] != seen["cursor"], "another task ran on this task's pinned instance"
    assert seen["thread"] != seen["cursor"], "another thread ran on this task's pinned instance"


def test_cursor_used_from_another_task_is_refused() -> None:
    db = safeclients.pooled(Connection, size=2, timeout=5)

    async def main() -> None:
        cur = db.cursor()

        async def other() -> None:
            cur.execute(1)

        with pytest.raises(safeclients.CrossThreadUseError, match="task"):
            await asyncio.create_task(other())
        cur.close()

    asyncio.run(asyncio.wait_for(main(), JOIN))


def test_locked_refuses_another_task_inside_a_tasks_block() -> None:
    db = safeclients.locked(Connection, timeout=5)

    async def main() -> None:
        cur = db.cursor()

        async def other() -> None:
            db.ping()

        with pytest.raises(safeclients.AsyncUseError, match="another asyncio task"):
            await asyncio.create_task(other())
        cur.close()
        await asyncio.create_task(other())

    asyncio.run(asyncio.wait_for(main(), JOIN))


# -- 10: async derived objects ----------------------------------------------------------------


class AsyncCursor:
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection
        self.rows: list[Any] = []

    async def execute(self, value: Any) -> AsyncCursor:
        if self.connection.dead:
            raise BrokenConnectionError("server closed the connection")
        self.rows = [(self.connection.id, value)]
        return self

    async def fetchone(self) -> Any:
        return self.rows[0]

    async def __aenter__(self) -> AsyncCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.rows = []


class AsyncConnection(FakeClient):
    dead = False

    def cursor(self) -> AsyncCursor:
        return AsyncCursor(self)


def test_async_with_derived_cursor_is_wrapped_and_refused_after() -> None:
    db = safeclients.pooled(AsyncConnection, size=1, timeout=0)

    async def main() -> None:
        async with db.cursor() as cur:
            assert type(cur) is not AsyncCursor
            assert (await cur.execute("x")) is cur
            assert (await cur.fetchone())[1] == "x"
            assert taken(db)
        assert not taken(db)
        with pytest.raises(safeclients.OutlivedUseError):
            await cur.execute("y")

    asyncio.run(asyncio.wait_for(main(), JOIN))


def test_error_awaiting_a_derived_method_discards_a_dead_connection() -> None:
    db = safeclients.pooled(AsyncConnection, size=1, timeout=0)

    async def main() -> None:
        with pytest.raises(BrokenConnectionError):
            async with db.cursor() as cur:
                cur.connection.dead = True
                await cur.execute("x")

    asyncio.run(asyncio.wait_for(main(), JOIN))
    assert safeclients.stats(db).discarded == 1
    assert not db.cursor().connection.dead


def test_cursor_class_is_reused_and_not_recompiled_per_request() -> None:
    db = safeclients.pooled(Connection, size=1)
    first = type(db.cursor())
    gc.collect()
    assert type(db.cursor()) is first
    assert Cursor.__name__ in first.__name__


# -- a lost pin: never continue a block on another instance ------------------------------------

LOSING_POLICIES = ["per_thread", "locked", "pooled", "per_process"]


def _session_proxy(kind: str) -> Any:
    from tests.lib.test_disconnect import Session

    if kind == "pooled":
        return safeclients.pooled(Session, size=2, timeout=5)
    return getattr(safeclients, kind)(Session)


@pytest.mark.usefixtures("session_profile", "call_path")
@pytest.mark.parametrize("kind", LOSING_POLICIES)
def test_block_whose_instance_died_refuses_the_rest(kind: str) -> None:
    from tests.lib.test_disconnect import StatementError

    proxy = _session_proxy(kind)
    with proxy:
        proxy.insert(1)
        first = proxy.whoami()[0]
        with pytest.raises(StatementError):
            proxy.lose()
        with pytest.raises(safeclients.InstanceDiscardedError, match="outside the transaction"):
            proxy.insert(2)
        with pytest.raises(safeclients.InstanceDiscardedError):
            proxy.commit()
    assert proxy.whoami()[0] != first, f"{kind}: the dead instance came back after the block"
    assert safeclients.stats(proxy).discarded == 1
    safeclients.dispose(proxy)


@pytest.mark.usefixtures("session_profile", "call_path")
@pytest.mark.parametrize("kind", LOSING_POLICIES)
def test_checkout_block_whose_instance_died_refuses_the_proxy_s_calls(kind: str) -> None:
    from tests.lib.test_disconnect import StatementError

    proxy = _session_proxy(kind)
    with pytest.raises(safeclients.InstanceDiscardedError):  # noqa: PT012
        with safeclients.checkout(proxy):
            with pytest.raises(StatementError):
                proxy.lose()
            proxy.insert(2)
    assert safeclients.stats(proxy).discarded == 1
    proxy.insert(3)  # a new block, a new instance
    safeclients.dispose(proxy)


@pytest.mark.usefixtures("session_profile", "call_path")
@pytest.mark.parametrize("kind", LOSING_POLICIES)
def test_cursor_whose_connection_died_refuses_the_proxy_s_calls_until_it_ends(kind: str) -> None:
    from tests.lib.test_disconnect import StatementError

    proxy = _session_proxy(kind)
    cursor = proxy.cursor()
    first = proxy.whoami()[0]
    with pytest.raises(StatementError):
        cursor.execute(True)
    with pytest.raises(safeclients.InstanceDiscardedError):
        proxy.commit()
    cursor.close()
    assert proxy.whoami()[0] != first
    assert safeclients.stats(proxy).discarded == 1
    safeclients.dispose(proxy)


@pytest.mark.usefixtures("session_profile", "call_path")
@pytest.mark.parametrize("kind", LOSING_POLICIES)
def test_block_after_a_statement_error_goes_on(kind: str) -> None:
    from tests.lib.test_disconnect import StatementError

    proxy = _session_proxy(kind)
    with proxy:
        first = proxy.whoami()[0]
        with pytest.raises(StatementError):
            proxy.bad_statement()
        proxy.insert(2)
        assert proxy.whoami()[0] == first
    assert safeclients.stats(proxy).discarded == 0
    safeclients.dispose(proxy)


@pytest.mark.usefixtures("session_profile")
def test_per_process_discard_by_another_thread_loses_this_block() -> None:
    from tests.lib.test_disconnect import StatementError

    proxy = _session_proxy("per_process")

    def lose_elsewhere() -> None:
        with pytest.raises(StatementError):
            proxy.lose()

    with proxy:
        first = proxy.whoami()[0]
        in_thread(lose_elsewhere)  # another thread finds the shared connection dead
        assert in_thread(lambda: proxy.whoami()[0]) != first, "the other thread got no new one"
        with pytest.raises(safeclients.InstanceDiscardedError):
            proxy.insert(2)
    assert proxy.whoami()[0] != first
    safeclients.dispose(proxy)
