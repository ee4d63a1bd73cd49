"""``per_loop``: one instance per running event loop, closed inside that loop, keyed by the loop.

Unit tier: fake async clients, no sockets. The real clients (redis.asyncio, httpx) are in
``tests/green/test_async_clients.py``.
"""

from __future__ import annotations

import asyncio
import gc
import pickle
import threading
import weakref
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

import safeclients
from safeclients import _proxy, profiles
from safeclients.per_loop import PerLoopPolicy
from tests.lib.fakes import AsyncFake
from tests.lib.forking import FORKS, run_in_child

JOIN = 30.0


class AsyncClient:
    """Remembers the loop it was first used on; fails, like real clients, on any other."""

    made: ClassVar[list[AsyncClient]] = []

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closed_in: asyncio.AbstractEventLoop | None = None
        self.closes = 0
        self.calls = 0
        AsyncClient.made.append(self)

    def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        if self.loop is None:
            self.loop = loop
        elif self.loop is not loop:
            raise RuntimeError("Future attached to a different loop")

    async def get(self, key: str) -> str:
        self._bind()
        self.calls += 1
        await asyncio.sleep(0)
        return key.upper()

    async def aclose(self) -> None:
        await asyncio.sleep(0)  # a real close awaits its transports
        self.closed_in = asyncio.get_running_loop()
        self.closes += 1


@pytest.fixture(autouse=True)
def _fresh() -> None:
    AsyncClient.made = []


def make() -> AsyncClient:
    return AsyncClient()


def policy_of(proxy: object) -> PerLoopPolicy[Any]:
    policy = _proxy.policy_of(proxy)
    assert isinstance(policy, PerLoopPolicy)
    return policy


async def many_tasks(client: Any, n: int = 20) -> list[str]:
    return list(await asyncio.gather(*(client.get(f"k{i}") for i in range(n))))


def test_one_instance_per_loop_closed_inside_its_loop(call_path: str) -> None:
    client = safeclients.per_loop(make)
    for _ in range(3):
        assert asyncio.run(many_tasks(client)) == [f"K{i}" for i in range(20)]
    made = AsyncClient.made
    assert len(made) == 3, f"expected one instance per asyncio.run, got {len(made)}"
    for instance in made:
        assert instance.calls == 20 and instance.closes == 1
        assert instance.closed_in is instance.loop, "closed outside the loop it belongs to"
    stats = safeclients.stats(client)
    assert (stats.created, stats.closed, stats.live) == (3, 3, 0), stats


def test_decorator_forms_and_policy_name() -> None:
    @safeclients.per_loop
    def bare() -> AsyncClient:
        return AsyncClient()

    @safeclients.per_loop(close=lambda c: c.aclose())
    def with_args() -> AsyncClient:
        return AsyncClient()

    async def use(proxy: Any) -> str:
        return str(await proxy.get("x"))

    for proxy in (bare, with_args):
        assert safeclients.policy_name(proxy) == "per_loop"
        assert asyncio.run(use(proxy)) == "X"
        assert safeclients.stats(proxy).closed == 1
    assert isinstance(bare, AsyncClient)


def test_eight_threads_each_with_its_own_loop() -> None:
    client = safeclients.per_loop(make)
    barrier = threading.Barrier(8, timeout=JOIN)
    errors: list[BaseException] = []

    async def run() -> None:
        barrier.wait()
        for _ in range(5):
            assert await many_tasks(client, 10) == [f"K{i}" for i in range(10)]

    def thread() -> None:
        try:
            asyncio.run(run())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=thread) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN)
    assert not any(t.is_alive() for t in threads), "a loop thread did not finish"
    assert errors == []
    assert len(AsyncClient.made) == 8 and all(c.closes == 1 for c in AsyncClient.made)
    assert len({id(c.loop) for c in AsyncClient.made}) == 8
    assert safeclients.stats(client).live == 0


def test_no_running_loop_is_a_named_error() -> None:
    # A block (and a special method) needs the instance now: with no running loop, there is
    # none to give. A method call is deferred instead (tests below).
    client = safeclients.per_loop(make)
    with pytest.raises(safeclients.NoRunningLoopError) as info:
        with safeclients.checkout(client):
            pass
    error = info.value
    assert isinstance(error, safeclients.SafeClientsError) and isinstance(error, RuntimeError)
    assert "no running event loop" in str(error) and "MainThread" in str(error)
    assert str(pickle.loads(pickle.dumps(error))) == str(error)
    assert AsyncClient.made == []


def test_a_loop_closed_by_hand_leaves_no_record_and_is_freed() -> None:
    client = safeclients.per_loop(make)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(many_tasks(client))
    loop.close()  # no shutdown_asyncgens: nowhere to await the close
    loop_ref = weakref.ref(loop)
    del loop
    assert safeclients.stats(client).live == 0
    assert len(policy_of(client).records) == 0
    AsyncClient.made.clear()  # the instance holds its loop (as real clients do)
    gc.collect()
    assert loop_ref() is None, "per_loop kept a closed loop alive"
    assert safeclients.stats(client).closed == 0


def test_loops_are_keyed_by_identity_not_id() -> None:
    # A new loop may get the id() of a freed one: it must still get its own instance.
    client = safeclients.per_loop(make)
    for _ in range(20):
        loop = asyncio.new_event_loop()
        loop.run_until_complete(many_tasks(client, 1))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        del loop
        gc.collect()
    assert len(AsyncClient.made) == 20 and all(c.closes == 1 for c in AsyncClient.made)


def test_no_lock_is_held_across_an_await() -> None:
    client = safeclients.per_loop(make)
    policy = policy_of(client)
    held: list[bool] = []

    class Probe(AsyncClient):
        async def get(self, key: str) -> str:
            await asyncio.sleep(0)
            held.append(policy._records_lock.locked())
            return key

    policy._factory = Probe

    async def main() -> None:
        await asyncio.gather(*(client.get("k") for _ in range(5)))

    asyncio.run(main())
    assert held == [False] * 5


def test_async_with_checkout_gives_the_loops_instance() -> None:
    client = safeclients.per_loop(make)

    async def main() -> bool:
        async with safeclients.checkout(client) as raw:
            first = raw
        await client.get("k")
        return first is AsyncClient.made[0] and len(AsyncClient.made) == 1

    assert asyncio.run(main())


def test_async_with_checkout_refuses_a_lock_held_across_awaits() -> None:
    locked = safeclients.locked(AsyncClient)

    async def main() -> None:
        async with safeclients.checkout(locked):
            pass

    with pytest.raises(TypeError, match="per_loop"):
        asyncio.run(main())


def test_dispose_closes_inside_the_loop_and_final_refuses() -> None:
    client = safeclients.per_loop(make)

    async def main() -> None:
        await client.get("k")
        safeclients.dispose(client)
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # the scheduled close task: sleep, then close
        assert AsyncClient.made[0].closes == 1
        assert AsyncClient.made[0].closed_in is AsyncClient.made[0].loop
        await client.get("k")  # a fresh one
        safeclients.dispose(client, final=True)
        with pytest.raises(safeclients.PoolClosed):
            await client.get("k")

    asyncio.run(main())
    assert [c.closes for c in AsyncClient.made] == [1, 1]


def test_sync_and_coroutine_close_methods() -> None:
    closed: list[str] = []

    class SyncClose:
        async def ping(self) -> bool:
            return True

        def close(self) -> None:
            closed.append("sync")

    class CoroutineClose:  # redis-py < 5: close() returns a coroutine
        async def ping(self) -> bool:
            return True

        async def close(self) -> None:
            closed.append("coroutine")

    async def ping(proxy: Any) -> bool:
        return bool(await proxy.ping())

    for factory in (SyncClose, CoroutineClose):
        proxy = safeclients.per_loop(factory)
        assert asyncio.run(ping(proxy)) is True
    assert closed == ["sync", "coroutine"]


@pytest.mark.parametrize("fork", sorted(FORKS))
def test_a_fork_child_never_touches_the_parents_instance(fork: str) -> None:
    client = safeclients.per_loop(make)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(many_tasks(client, 1))  # the parent's instance, loop left open
        parent_instance = AsyncClient.made[0]

        def child() -> dict[str, Any]:
            # The child runs the inherited loop's shutdown: the parent's instance is orphaned.
            loop.run_until_complete(loop.shutdown_asyncgens())
            result = asyncio.run(many_tasks(client, 1))[0]
            return {
                "result": result,
                "parent_closes": parent_instance.closes,
                "made": len(AsyncClient.made),
                "stats": safeclients.stats(client).created,
                "child_closed": AsyncClient.made[-1].closes,
            }

        seen = run_in_child(FORKS[fork], child)
        assert seen == {
            "result": "K0",
            "parent_closes": 0,
            "made": 2,
            "stats": 1,
            "child_closed": 1,
        }, seen
        assert parent_instance.closes == 0
        loop.run_until_complete(loop.shutdown_asyncgens())
        assert parent_instance.closes == 1
    finally:
        loop.close()


# -- calls made before their loop runs (safeclients._pending) ------------------------------------


def test_a_call_made_before_its_loop_runs_binds_to_that_loop(call_path: str) -> None:
    # asyncio.run(client.get(1)): the coroutine is made before asyncio.run starts its loop.
    client = safeclients.per_loop(make)
    assert asyncio.run(client.get("a")) == "A"
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(client.get("b")) == "B"
        assert loop.run_until_complete(client.get("c")) == "C"
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
    assert len(AsyncClient.made) == 2, "one instance per loop that ran a call"
    assert [c.calls for c in AsyncClient.made] == [1, 2]
    assert all(c.closes == 1 and c.closed_in is c.loop for c in AsyncClient.made)


def test_a_factory_of_unknown_type_defers_too() -> None:
    # No annotation, no class: the first lookup happens before any instance or loop exists.
    client = safeclients.per_loop(lambda: AsyncClient())
    assert asyncio.run(client.get("a")) == "A"
    assert asyncio.run(client.get("b")) == "B"
    assert len(AsyncClient.made) == 2


def test_a_pending_call_read_as_a_value_says_how() -> None:
    client = safeclients.per_loop(lambda: AsyncClient())
    pending = client.get("k")
    with pytest.raises(safeclients.NoRunningLoopError, match="await it first"):
        pending.upper()
    method = client.get
    with pytest.raises(safeclients.NoRunningLoopError, match="no running event loop"):
        method.some_attribute  # noqa: B018 (the read is the test)
    pending.close()
    assert AsyncClient.made == []


def test_a_pending_call_keeps_async_with_and_async_for() -> None:
    client = safeclients.per_loop(AsyncFake)
    rows = client.rows(3)
    pipeline = client.pipeline()

    async def main() -> tuple[list[Any], list[Any]]:
        read = [i for _, i in [row async for row in rows]]
        async with pipeline as pipe:
            done = await pipe.set("x").execute()
        return read, [key for _, key in done]

    assert asyncio.run(main()) == ([0, 1, 2], ["x"])
    assert safeclients.stats(client).created == 1


def test_an_awaitable_keeps_its_interface_inside_the_loop() -> None:
    client = safeclients.per_loop(AsyncFake)

    async def main() -> list[Any]:
        async with client.pipeline() as pipe:
            first = await pipe.set("a").execute()
        pipe = await client.pipeline()
        return [key for _, key in first + await pipe.set("b").execute()]

    assert asyncio.run(main()) == ["a", "b"]


# -- async factories (awaited in the loop that will use the instance) -------------------------


class AwaitablePool(AsyncClient):
    """asyncpg.create_pool's shape: made by a sync call, usable only once awaited."""

    def __init__(self) -> None:
        super().__init__()
        self.ready = False

    def __await__(self) -> Any:
        return self._start().__await__()

    async def _start(self) -> AwaitablePool:
        await asyncio.sleep(0)
        self.ready = True
        return self

    async def get(self, key: str) -> str:
        if not self.ready:
            raise RuntimeError("pool is not initialized")
        return await super().get(key)


async def async_make() -> AsyncClient:
    await asyncio.sleep(0)  # asyncpg.connect(dsn)
    return AsyncClient()


@pytest.mark.parametrize("factory", [async_make, AwaitablePool], ids=["async-def", "awaitable"])
def test_an_async_factory_is_awaited_in_the_loop_that_uses_it(call_path: str, factory: Any) -> None:
    client = safeclients.per_loop(factory)
    assert asyncio.run(many_tasks(client)) == [f"K{i}" for i in range(20)]
    assert asyncio.run(client.get("x")) == "X"  # made before its loop runs, too

    async def block() -> bool:
        async with safeclients.checkout(client) as raw:
            return await raw.get("y") == "Y" and raw is AsyncClient.made[-1]

    assert asyncio.run(block())
    assert len(AsyncClient.made) == 3, "one instance per loop, however many tasks asked at once"
    assert all(c.closes == 1 and c.closed_in is c.loop for c in AsyncClient.made)
    stats = safeclients.stats(client)
    assert (stats.created, stats.closed, stats.live) == (3, 3, 0)


def test_an_async_factory_that_fails_fails_every_waiting_call_then_heals() -> None:
    attempts: list[int] = []

    async def flaky() -> AsyncClient:
        attempts.append(1)
        await asyncio.sleep(0)
        if len(attempts) == 1:
            raise ConnectionRefusedError("backend down")
        return AsyncClient()

    client = safeclients.per_loop(flaky)

    async def main() -> tuple[list[Any], str]:
        first = await asyncio.gather(*(client.get("a") for _ in range(3)), return_exceptions=True)
        return list(first), await client.get("b")

    first, second = asyncio.run(main())
    assert all(isinstance(error, ConnectionRefusedError) for error in first), first
    assert second == "B" and len(attempts) == 2


def test_a_sync_policy_refuses_an_async_factory_with_a_sentence() -> None:
    for make_proxy in (safeclients.per_thread, safeclients.locked):  # pooled awaits one
        proxy = make_proxy(async_make)

        async def main(proxy: Any = proxy) -> None:
            await proxy.get("k")

        with pytest.raises(safeclients.FactoryError, match="is async"):
            asyncio.run(main())
    assert AsyncClient.made == []


def test_a_cancelled_call_does_not_retire_the_loops_instance(call_path: str) -> None:
    # Other tasks are using it: one task's cancellation (a client gone, a wait_for timeout)
    # must not close it under them.
    client = safeclients.per_loop(make)
    started: list[asyncio.Event] = []

    class Slow(AsyncClient):
        async def get(self, key: str) -> str:
            started[0].set()
            await asyncio.Event().wait()  # until cancelled
            return key  # pragma: no cover

    policy_of(client)._factory = Slow

    async def main() -> None:
        started.append(asyncio.Event())
        task = asyncio.ensure_future(client.get("k"))
        await started[0].wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    stats = safeclients.stats(client)
    assert (stats.created, stats.discarded, stats.closed) == (1, 0, 1), stats


def test_a_first_use_during_the_loops_shutdown_is_refused() -> None:
    # An async generator's `finally` run by shutdown_asyncgens: an instance made then could
    # never be closed inside the loop (it used to be made, never closed, and live said 0).
    client = safeclients.per_loop(make)
    seen: list[BaseException] = []

    async def late() -> Any:
        try:
            yield
        finally:
            try:
                await client.get("late")
            except safeclients.NoRunningLoopError as error:
                seen.append(error)

    async def main() -> Any:
        generator = late()
        await generator.asend(None)  # left suspended: closed at the loop's shutdown
        return generator

    kept = asyncio.run(main())
    assert len(seen) == 1 and "shut its async generators down" in str(seen[0])
    assert AsyncClient.made == [] and safeclients.stats(client).created == 0
    del kept


class FinalizedAsync(AsyncFake):
    """Notes its finalization (an unclosed async client's ``__del__`` may abort a transport
    whose connection is the parent's) in the process's ``FINALIZED`` list."""

    def __del__(self) -> None:
        FINALIZED.append(self.id)


FINALIZED: list[int] = []


@pytest.mark.parametrize("fork", sorted(FORKS))
def test_a_fork_child_keeps_every_loops_inherited_instance_unfinalized(fork: str) -> None:
    from safeclients import _fork

    client = safeclients.per_loop(FinalizedAsync)
    loops = [asyncio.new_event_loop() for _ in range(2)]
    try:
        # Two loops' instances in the parent, both loops left open (not running at the fork).
        parent_ids = [loop.run_until_complete(client.fetch(0))[0] for loop in loops]

        def child() -> Any:
            FINALIZED.clear()
            result = asyncio.run(client.fetch(1))  # the reset drops the parent's instances
            gc.collect()
            kept = [getattr(obj, "id", None) for obj in _fork.INHERITED]
            return [FINALIZED, kept, result[1], safeclients.stats(client).created]

        finalized, kept, result, created = run_in_child(FORKS[fork], child)
        assert not set(parent_ids) & set(finalized), "the child finalized a parent's instance"
        assert set(parent_ids) <= set(kept), f"{parent_ids} not all kept: {kept}"
        assert (result, created) == (1, 1), "the child made and used its own instance"
        assert [loop.run_until_complete(client.fetch(2))[0] for loop in loops] == parent_ids
    finally:
        for loop in loops:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()


class DeadCursor:
    """A derived object (it refers back to its client) whose ``execute`` finds the connection
    dead."""

    def __init__(self, client: Dying) -> None:
        self.client = client

    def execute(self) -> None:
        raise ConnectionResetError("the server closed the connection")

    def close(self) -> None:
        pass


class Dying(AsyncFake):
    def cursor(self) -> DeadCursor:
        return DeadCursor(self)


def test_a_lost_pin_retires_the_loops_instance_and_refuses_the_rest_of_its_use() -> None:
    client = safeclients.per_loop(Dying)

    async def main() -> tuple[Any, ...]:
        first = (await client.fetch(0))[0]
        cur = client.cursor()
        with pytest.raises(ConnectionResetError):
            cur.execute()  # the cursor's connection is dead: its pin is lost
        with pytest.raises(safeclients.InstanceDiscardedError):
            await client.fetch(1)  # the rest of the cursor's use: refused, never a new one

        async def other_task() -> Any:
            return (await client.fetch(2))[0]

        other = await asyncio.create_task(other_task())
        cur.close()
        after = (await client.fetch(3))[0]
        return first, other, after

    first, other, after = asyncio.run(main())
    assert other != first, "another task of the loop gets a new instance at once"
    assert after == other, "after the cursor's end, this task uses the loop's new instance"
    stats = safeclients.stats(client)
    assert (stats.created, stats.discarded) == (2, 1), stats


class Shared(AsyncClient):
    """One instance serving many tasks: ``get("slow")`` waits on a gate, ``get("dead")``
    fails as a dropped connection does; each records whether the client was closed under it."""

    gate: ClassVar[asyncio.Event]
    started: ClassVar[asyncio.Event]
    closed_under: ClassVar[list[str]] = []

    async def get(self, key: str) -> str:
        self._bind()
        if key == "dead":
            raise ConnectionResetError("connection lost")
        if key == "slow":
            Shared.started.set()
            await Shared.gate.wait()
        if self.closes:
            Shared.closed_under.append(key)
        return key.upper()


@pytest.mark.parametrize("retire", ["error", "dispose"])
def test_an_instance_retired_under_running_calls_is_closed_when_they_end(
    call_path: str, retire: str
) -> None:
    # Another task's dead-connection error, or a dispose, retires the loop's instance while a
    # task's call is still running on it: the close waits for that call (it used to close the
    # client under it).
    client = safeclients.per_loop(Shared)
    Shared.closed_under = []

    async def main() -> tuple[str, int, int]:
        Shared.gate, Shared.started = asyncio.Event(), asyncio.Event()
        slow = asyncio.ensure_future(client.get("slow"))
        await Shared.started.wait()
        if retire == "error":
            with pytest.raises(ConnectionResetError):
                await client.get("dead")
        else:
            safeclients.dispose(client)
        for _ in range(5):
            await asyncio.sleep(0)  # a close task, if one was spawned, runs here
        closes_while_running = AsyncClient.made[0].closes
        Shared.gate.set()
        answer = await slow
        for _ in range(5):
            await asyncio.sleep(0)
        return answer, closes_while_running, AsyncClient.made[0].closes

    answer, closes_while_running, closes_after = asyncio.run(main())
    assert answer == "SLOW" and Shared.closed_under == []
    assert closes_while_running == 0, "the instance was closed under a running call"
    assert closes_after == 1, "the retired instance is closed once its last call ended"
    stats = safeclients.stats(client)
    assert stats.discarded == (1 if retire == "error" else 0) and stats.live == 0, stats


class OneTask(AsyncClient):
    """asyncpg's Connection's shape: serves one task at a time; a transaction is the
    connection's (``async with conn.transaction()``)."""

    def transaction(self) -> Transaction:
        return Transaction(self)


class Transaction:
    def __init__(self, connection: OneTask) -> None:
        self.connection = connection

    async def __aenter__(self) -> Transaction:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        pass


@pytest.fixture
def one_task_profile() -> Iterator[None]:
    profile = profiles.Profile(
        qualname=f"{OneTask.__module__}.{OneTask.__qualname__}",
        reason="test client",
        suggest="per_loop",
        sources=("tests/lib/test_per_loop.py",),
        derived=frozenset({"transaction"}),
        one_task=True,
    )
    profiles.register(profile)
    try:
        yield
    finally:
        profiles.unregister(profile.qualname)


@pytest.mark.usefixtures("one_task_profile")
def test_a_one_task_client_held_by_a_task_is_refused_to_the_others(call_path: str) -> None:
    # asyncpg's Connection under per_loop: another task's statement inside a task's
    # transaction block would run in that transaction (and be rolled back with it, silently).
    client = safeclients.per_loop(OneTask)

    async def main() -> tuple[Any, str, str]:
        inside, done = asyncio.Event(), asyncio.Event()

        async def holder() -> str:
            async with client.transaction():
                inside.set()
                await done.wait()
                return await client.get("mine")  # the holder's own calls run

        async def other() -> Any:
            await inside.wait()
            try:
                return await client.get("other")
            finally:
                done.set()

        held, refused = await asyncio.gather(holder(), other(), return_exceptions=True)
        return refused, held, await client.get("after")  # free again once the block ended

    refused, held, after = asyncio.run(main())
    assert isinstance(refused, safeclients.ConcurrentUseError), refused
    assert "held by another task" in str(refused)
    assert (held, after) == ("MINE", "AFTER")
