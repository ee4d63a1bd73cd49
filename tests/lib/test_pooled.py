"""``pooled``: a bounded LIFO pool (fake client; no sockets)."""

from __future__ import annotations

import asyncio
import threading
import warnings
from typing import Any

import pytest

import safeclients
from safeclients import _proxy
from safeclients.pooled import PooledPolicy
from tests.lib.fakes import AsyncFake, BrokenConnectionError, FakeClient
from tests.lib.threads import JOIN, in_thread

# Every test here runs over both call paths (tests/lib/conftest.py).
pytestmark = pytest.mark.usefixtures("call_path")


def test_pooled_is_lifo_and_bounded() -> None:
    proxy = safeclients.pooled(FakeClient, size=2, timeout=0.05)
    first = proxy.ping()[0]
    assert proxy.ping()[0] == first, "an idle instance is reused (LIFO), not a new one created"
    with safeclients.checkout(proxy) as a, safeclients.checkout(proxy) as b:
        assert a is b, "a block nested in a block of the same context joins it"
        taken = threading.Event()
        release = threading.Event()

        def hold_one() -> None:
            with safeclients.checkout(proxy):
                taken.set()
                release.wait(JOIN)

        holder = threading.Thread(target=hold_one)
        holder.start()
        assert taken.wait(JOIN)
        with pytest.raises(safeclients.PoolTimeout) as info:
            in_thread(proxy.ping)
        release.set()
        holder.join(JOIN)
    message = str(info.value)
    assert "2 instances" in message and "0.05 s" in message
    stats = safeclients.stats(proxy)
    assert (stats.created, stats.live, stats.waits) == (2, 2, 1)


def test_pooled_waiter_gets_released_instance() -> None:
    proxy = safeclients.pooled(FakeClient, size=1, timeout=30.0)
    started = threading.Event()
    result: list[Any] = []
    with safeclients.checkout(proxy) as held:

        def wait_for_it() -> None:
            started.set()
            result.append(proxy.ping()[0])

        thread = threading.Thread(target=wait_for_it)
        thread.start()
        assert started.wait(JOIN)
    thread.join(JOIN)
    assert result == [held.id]


def test_pooled_discards_broken_instances() -> None:
    proxy = safeclients.pooled(FakeClient, size=1, timeout=1.0)
    first = proxy.ping()[0]
    with pytest.raises(BrokenConnectionError):
        proxy.fail(BrokenConnectionError("gone"))
    second = proxy.ping()[0]
    assert second != first
    with pytest.raises(KeyError):
        proxy.fail(KeyError("app error: keep the instance"))
    assert proxy.ping()[0] == second
    stats = safeclients.stats(proxy)
    assert (stats.created, stats.discarded, stats.live) == (2, 1, 1)


def test_pooled_checkout_block_discards_on_connection_error() -> None:
    proxy = safeclients.pooled(FakeClient, size=1, timeout=1.0)
    with pytest.raises(OSError):
        with safeclients.checkout(proxy) as client:
            broken = client.id
            raise OSError("socket closed")
    assert proxy.ping()[0] != broken


def test_pooled_custom_discard_on() -> None:
    proxy = safeclients.pooled(FakeClient, size=1, discard_on=(KeyError,))
    first = proxy.ping()[0]
    with pytest.raises(OSError):
        proxy.fail(OSError("not discarded with a custom discard_on"))
    assert proxy.ping()[0] == first
    with pytest.raises(KeyError):
        proxy.fail(KeyError("x"))
    assert proxy.ping()[0] != first


def test_pooled_dispose_closes_idle_now_and_busy_on_return() -> None:
    proxy = safeclients.pooled(FakeClient, size=2, timeout=1.0)
    with safeclients.checkout(proxy) as busy:
        assert proxy.whoami()[0] == busy.id, "the block's calls run on its instance"
        idle = in_thread(lambda: proxy.whoami()[0])
        safeclients.dispose(proxy)
        assert busy.close_calls == 0
    assert busy.close_calls == 1
    stats = safeclients.stats(proxy)
    assert (stats.closed, stats.live) == (2, 0)
    assert proxy.ping()[0] not in (idle, busy.id)


def test_pooled_decorator_with_arguments() -> None:
    @safeclients.pooled(size=3, timeout=2.0)
    def client() -> FakeClient:
        return FakeClient()

    assert client.ping("v")[1] == "v"
    assert safeclients.policy_name(client) == "pooled"


# -- inside a running event loop (module docstring: "Inside a running event loop") -----------------


def pool_policy(proxy: object) -> PooledPolicy[Any]:
    policy = _proxy.policy_of(proxy)
    assert isinstance(policy, PooledPolicy)
    return policy


async def _until(condition: Any, what: str, steps: int = 1000) -> None:
    """Let the loop run until ``condition()`` holds (bounded: a hang becomes a failure)."""
    for _ in range(steps):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened within {steps} loop steps: {what}")


def test_a_sync_method_returning_a_coroutine_waits_in_the_loop() -> None:
    # redis.asyncio's commands are plain functions returning coroutines: with every instance in
    # use, the call waits for one without blocking the loop (it used to block until PoolTimeout).
    proxy = safeclients.pooled(AsyncFake, size=2, timeout=5.0)

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(proxy.command(i) for i in range(8))))

    results = asyncio.run(main())
    assert [key for _, key in results] == list(range(8))
    made = {instance for instance, _ in results}
    stats = safeclients.stats(proxy)
    assert len(made) == 2 and stats.created == 2, stats
    assert stats.waits >= 1, "some calls waited for a free instance"


def test_a_wait_lets_the_loop_run_other_tasks() -> None:
    proxy = safeclients.pooled(AsyncFake, size=1, timeout=5.0)
    ticks: list[int] = []

    async def main() -> Any:
        async with safeclients.checkout(proxy):
            # Called in another task (in this one, the call would run on the block's instance).
            waiting = asyncio.ensure_future(_in_task(proxy.command, "queued"))
            policy = pool_policy(proxy)
            await _until(lambda: policy.waiting == 1, "the call waits for the instance")
            for i in range(3):
                ticks.append(i)  # the loop runs this task while the call waits
                await asyncio.sleep(0)
            assert not waiting.done()
        return await waiting

    assert asyncio.run(main())[1] == "queued"
    assert ticks == [0, 1, 2]


def test_a_sync_block_that_would_wait_in_a_loop_is_refused() -> None:
    proxy = safeclients.pooled(AsyncFake, size=1, timeout=5.0)

    async def main() -> None:
        async with safeclients.checkout(proxy):
            with pytest.raises(safeclients.WouldBlockLoopError, match="1 instances") as info:
                await asyncio.gather(_sync_block())
            assert isinstance(info.value, RuntimeError)

    async def _sync_block() -> None:
        with safeclients.checkout(proxy):
            pass  # pragma: no cover (refused)

    asyncio.run(main())
    assert safeclients.stats(proxy).created == 1


def test_a_task_cancelled_while_waiting_loses_no_slot() -> None:
    proxy = safeclients.pooled(AsyncFake, size=1, timeout=5.0)
    policy = pool_policy(proxy)

    async def main() -> Any:
        async with safeclients.checkout(proxy):
            waiter = asyncio.ensure_future(proxy.fetch("cancelled"))
            await _until(lambda: policy.waiting == 1, "the call waits")
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
        return await proxy.fetch("after")

    assert asyncio.run(main())[1] == "after"
    # The loop's end closed its one instance and freed its slot (nothing else held one).
    assert (policy.waiting, policy._task_waiters, policy._count) == (0, [], 0)
    stats = safeclients.stats(proxy)
    assert (stats.created, stats.closed, stats.live) == (1, 1, 0), stats


def test_a_wake_up_taken_by_a_cancelled_task_is_passed_on() -> None:
    # The releaser wakes the first waiter, which is cancelled before it runs: the second
    # waiter must get the instance now (without the hand-over it would sleep out its timeout).
    proxy = safeclients.pooled(AsyncFake, size=1, timeout=60.0)
    policy = pool_policy(proxy)

    async def main() -> Any:
        block = safeclients.checkout(proxy)
        await block.__aenter__()
        first = asyncio.ensure_future(proxy.fetch("first"))
        second = asyncio.ensure_future(proxy.fetch("second"))
        await _until(lambda: policy.waiting == 2, "both calls wait")
        await block.__aexit__(None, None, None)  # wakes `first`...
        first.cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await first
        await _until(second.done, "the wake-up taken by the cancelled task reaches the next")
        return second.result()

    assert asyncio.run(main())[1] == "second"
    stats = safeclients.stats(proxy)
    assert (stats.created, stats.closed, stats.live) == (1, 1, 0), stats


def test_async_with_checkout_holds_one_instance_for_the_task() -> None:
    proxy = safeclients.pooled(AsyncFake, size=2, timeout=5.0)

    async def block(tag: str) -> set[int]:
        seen = set()
        async with safeclients.checkout(proxy) as client:
            seen.add(client.id)
            for _ in range(3):
                seen.add((await proxy.command(tag))[0])  # the block's instance, every time
        return seen

    results = asyncio.run(_gather(*(block(str(i)) for i in range(6))))
    assert all(len(seen) == 1 for seen in results), results
    assert safeclients.stats(proxy).created == 2


def test_an_async_generator_method_keeps_its_instance() -> None:
    proxy = safeclients.pooled(AsyncFake, size=1, timeout=5.0)

    async def read() -> list[Any]:
        return [row async for row in proxy.rows(3)]

    results = asyncio.run(_gather(read(), read(), read()))
    assert [[i for _, i in rows] for rows in results] == [[0, 1, 2]] * 3
    stats = safeclients.stats(proxy)
    assert (stats.created, stats.closed, stats.live) == (1, 1, 0), stats


def test_an_awaitable_keeps_its_interface() -> None:
    # redis.asyncio's pipeline: `async with r.pipeline() as p` and `await r.pipeline()`.
    proxy = safeclients.pooled(AsyncFake, size=1, timeout=5.0)

    async def main() -> Any:
        async with proxy.pipeline() as pipe:
            first = await pipe.set("a").set("b").execute()
        pipe = await proxy.pipeline()
        second = await pipe.set("c").execute()
        return [key for _, key in first + second]

    assert asyncio.run(main()) == ["a", "b", "c"]


def test_no_two_tasks_share_an_instance_under_load() -> None:
    proxy = safeclients.pooled(AsyncFake, size=3, timeout=10.0)
    made: list[AsyncFake] = []

    async def one(i: int) -> None:
        if i % 3 == 0:
            await proxy.command(i)
        elif i % 3 == 1:
            await proxy.fetch(i)
        else:
            async for _ in proxy.rows(2):
                pass

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(300)))
        async with safeclients.checkout(proxy) as client:
            made.append(client)

    asyncio.run(main())
    stats = safeclients.stats(proxy)
    assert (stats.created, stats.closed, stats.live) == (3, 3, 0), stats
    assert made[0].overlaps == 0, "two tasks were inside one instance at once"


async def _in_task(method: Any, *args: Any) -> Any:
    return await method(*args)


async def _gather(*coroutines: Any) -> list[Any]:
    return list(await asyncio.gather(*coroutines))


# -- whatever interrupts a check or a close, no slot is lost -----------------------------------


class Cutoff(BaseException):
    """Stands for gevent.Timeout or KeyboardInterrupt: not an Exception, so no handler eats it."""


def test_a_check_cut_off_loses_no_slot() -> None:
    cut = [False]

    def check(client: Any) -> bool:
        if cut[0]:
            raise Cutoff
        return True

    proxy = safeclients.pooled(FakeClient, size=1, timeout=0.5, check=check)
    first = proxy.ping()[0]
    cut[0] = True
    with pytest.raises(Cutoff):
        proxy.ping()
    cut[0] = False
    assert proxy.ping()[0] != first, "the interrupted instance was discarded, its slot reused"
    stats = safeclients.stats(proxy)
    assert (stats.created, stats.discarded, stats.live) == (2, 1, 1), stats


def test_a_retiring_close_cut_off_loses_no_slot() -> None:
    dead = [False]

    def close(client: Any) -> None:
        raise Cutoff

    proxy = safeclients.pooled(
        FakeClient, size=1, timeout=0.5, check=lambda client: not dead[0], close=close
    )
    proxy.ping()
    dead[0] = True
    with pytest.raises(Cutoff):
        proxy.ping()  # its check says dead, and its close is cut off
    dead[0] = False
    proxy.ping()  # the slot is free again: no PoolTimeout
    assert safeclients.stats(proxy).live == 1


# -- async close --------------------------------------------------------------------------------


def test_an_async_close_is_awaited_in_the_loop() -> None:
    proxy = safeclients.pooled(AsyncFake, size=1, timeout=5.0)

    async def main() -> AsyncFake:
        async with safeclients.checkout(proxy) as raw:
            pass
        safeclients.dispose(proxy)
        await _until(lambda: safeclients.stats(proxy).closed == 1, "the close task ran")
        return raw

    raw = asyncio.run(main())
    assert raw.closes == 1, "aclose() was awaited"


def test_an_async_close_with_no_loop_to_await_it_is_counted_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy = safeclients.pooled(AsyncFake, size=1, timeout=5.0)
    with safeclients.checkout(proxy) as raw:  # made outside any loop: no loop closes it
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no "coroutine was never awaited"
        safeclients.dispose(proxy)
    stats = safeclients.stats(proxy)
    assert (raw.closes, stats.closed, stats.close_failed) == (0, 0, 1), stats
    assert "no event loop" in caplog.text


def test_instances_made_in_a_loop_leave_the_pool_when_it_ends() -> None:
    # An import-time asyncio.run() warm-up, then the worker's own loop: the warm-up's instance
    # is closed inside its loop and its slot freed; the next loop makes its own (it used to get
    # the old one: "Event loop is closed", "attached to a different loop").
    proxy = safeclients.pooled(AsyncFake, size=2, timeout=5.0)

    async def use() -> AsyncFake:
        await proxy.command("warm")
        async with safeclients.checkout(proxy) as raw:
            return raw

    first = asyncio.run(use())
    stats = safeclients.stats(proxy)
    assert (first.closes, stats.closed, stats.live) == (1, 1, 0), stats
    second = asyncio.run(use())
    assert second is not first and second.closes == 1
    assert safeclients.stats(proxy).created == 2


# -- async factories: awaited in the loop that will use the instance ---------------------------


async def make_async() -> AsyncFake:
    await asyncio.sleep(0)  # asyncpg.connect(dsn)
    return AsyncFake()


class StartingClient(AsyncFake):
    """asyncpg.create_pool's shape: the factory returns it unstarted; awaiting it starts it
    (and gives itself); every command before that fails, as "pool is not initialized"."""

    def __init__(self) -> None:
        super().__init__()
        self.started = False

    def __await__(self) -> Any:
        return self._start().__await__()

    async def _start(self) -> StartingClient:
        await asyncio.sleep(0)
        self.started = True
        return self

    def command(self, key: Any) -> Any:
        if not self.started:
            raise RuntimeError("pool is not initialized")
        return super().command(key)


@pytest.mark.parametrize("factory", [make_async, StartingClient], ids=["async-def", "awaitable"])
def test_an_async_factory_is_awaited_in_the_loop_that_uses_it(factory: Any) -> None:
    proxy = safeclients.pooled(factory, size=2, timeout=5.0)

    async def main() -> list[Any]:
        # Plain-function commands, async def methods and a block, all at once on a pool of 2.
        calls = [proxy.command(n) for n in range(8)] + [proxy.fetch(-n) for n in range(8)]
        results = list(await asyncio.gather(*calls))
        async with safeclients.checkout(proxy) as raw:
            assert await raw.fetch("block") == (raw.id, "block")
        return [key for _, key in results]

    assert asyncio.run(main()) == [*range(8), *(-n for n in range(8))]
    stats = safeclients.stats(proxy)
    assert stats.created <= 2 and stats.live == 0 and stats.closed == stats.created, stats
    # A coroutine made before its loop runs takes its instance when awaited.
    assert asyncio.run(proxy.command("x"))[1] == "x"
    assert asyncio.run(proxy.fetch("y"))[1] == "y"


def test_an_async_factory_outside_any_loop_is_refused_with_a_sentence() -> None:
    proxy = safeclients.pooled(make_async, size=1, timeout=5.0)
    with (
        pytest.raises(safeclients.FactoryError, match="no event loop runs here"),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("error")  # the coroutine is closed, never "never awaited"
        with safeclients.checkout(proxy):
            pass
    assert safeclients.stats(proxy).live == 0
    assert asyncio.run(proxy.command(1))[1] == 1  # the slot was given back


def test_a_sync_block_in_a_loop_waits_for_no_async_factory() -> None:
    proxy = safeclients.pooled(make_async, size=1, timeout=5.0)

    async def main() -> Any:
        with pytest.raises(safeclients.FactoryError, match="still being awaited"):
            with safeclients.checkout(proxy):
                pass
        return await proxy.command("after")  # the instance the refused block started

    assert asyncio.run(main())[1] == "after"
    assert safeclients.stats(proxy).created == 1


def test_an_async_factory_cancelled_or_failing_gives_its_slot_back() -> None:
    gate = asyncio.Event()
    attempts: list[str] = []

    async def factory() -> AsyncFake:
        attempts.append("try")
        if len(attempts) == 1:
            await gate.wait()  # never set: this creation is cancelled
        if len(attempts) == 2:
            raise ConnectionRefusedError("backend down")
        return AsyncFake()

    proxy = safeclients.pooled(factory, size=1, timeout=5.0)

    async def main() -> Any:
        stuck = asyncio.create_task(proxy.fetch(1))
        await _until(lambda: attempts, "the first creation to start")
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stuck
        with pytest.raises(ConnectionRefusedError):
            await proxy.fetch(2)
        return await proxy.fetch(3)  # a pool of 1: both failed slots came back

    assert asyncio.run(main())[1] == 3
    assert len(attempts) == 3


def test_loops_in_two_threads_never_share_an_instance() -> None:
    # An async instance belongs to its loop: two threads' loops on one pool of 2 take each
    # other's idle instances' slots (closing them in their own loop), never the instances.
    proxy = safeclients.pooled(AsyncFake, size=2, timeout=JOIN)
    barrier = threading.Barrier(2, timeout=JOIN)
    seen: dict[int, set[int]] = {}

    def run(side: int) -> None:
        async def main() -> None:
            ids: set[int] = set()
            for round_ in range(20):
                barrier.wait()  # both loops alive and busy at once
                results = await asyncio.gather(*(proxy.command(n) for n in range(4)))
                assert [key for _, key in results] == list(range(4)), round_
                ids.update(instance for instance, _ in results)
            seen[side] = ids

        try:
            asyncio.run(main())
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)
            barrier.abort()

    errors: list[BaseException] = []
    threads = [threading.Thread(target=run, args=(side,), name=f"loop-{side}") for side in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN)
    assert not any(thread.is_alive() for thread in threads), "a loop thread did not finish"
    assert not errors, errors
    assert seen.keys() == {0, 1}
    assert not seen[0] & seen[1], f"an instance served two loops: {seen}"
    stats = safeclients.stats(proxy)
    assert stats.live == 0 and stats.closed == stats.created, stats


def test_repeated_runs_do_not_pile_up_loops() -> None:
    # A sync app calling an async client through asyncio.run() per request: each run is a new
    # loop; the pool keeps no list for the loops that are gone.
    proxy = safeclients.pooled(make_async, size=2, timeout=5.0)
    for n in range(20):
        assert asyncio.run(proxy.fetch(n))[1] == n
    policy: Any = _proxy.policy_of(proxy)
    assert len(policy._loop_free) <= 1, policy._loop_free
    stats = safeclients.stats(proxy)
    assert (stats.created, stats.closed, stats.live) == (20, 20, 0), stats


def test_a_close_cancelled_by_the_loops_end_is_finished_at_its_shutdown() -> None:
    # A dead connection discarded just before asyncio.run ends: its close task is cancelled
    # with the other tasks left; it used to be dropped unclosed (counted as a failed close,
    # the server still holding the connection). It is closed at the loop's shutdown instead.
    class Dying(AsyncFake):
        async def fetch(self, key: Any) -> tuple[int, Any]:
            raise ConnectionResetError("connection lost")

        async def aclose(self) -> None:
            for _ in range(3):
                await asyncio.sleep(0)  # a real close awaits its transports
            self.closes += 1

    proxy = safeclients.pooled(Dying, size=1, timeout=5.0)
    made: list[Dying] = []

    async def main() -> None:
        async with safeclients.checkout(proxy) as raw:
            made.append(raw)
        with pytest.raises(ConnectionResetError):
            await proxy.fetch(1)  # discarded: its close is a task that has not run yet

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # never "coroutine ... was never awaited"
        asyncio.run(main())
    stats = safeclients.stats(proxy)
    assert made[0].closes == 1, "the discarded instance was never closed"
    assert (stats.discarded, stats.close_failed, stats.live) == (1, 0, 0), stats


# -- found by the ASGI proof (examples/asgi, tests/realclients/test_asgi.py) ---------------------


@pytest.mark.parametrize("method", ["command", "fetch"])
def test_a_call_made_before_its_loop_runs_leaves_the_pool_with_that_loop(
    method: str, call_path: str
) -> None:
    # An import-time warm-up, asyncio.run(cache.ping()): the call is made before its loop
    # runs; its instance is that loop's, closed there when it ends, and the worker's loop
    # makes its own (it used to get the warm-up's: "Event loop is closed").
    proxy = safeclients.pooled(AsyncFake, size=2, timeout=5.0)
    warm = asyncio.run(getattr(proxy, method)("warm"))  # made outside, awaited in asyncio.run
    stats = safeclients.stats(proxy)
    assert (stats.closed, stats.live) == (1, 0), (
        f"the warm-up's instance is closed inside its loop when asyncio.run ends it: {stats}"
    )
    served = asyncio.run(getattr(proxy, method)("worker"))  # the worker's loop
    assert served[0] != warm[0], "the worker's loop made its own instance"


@pytest.mark.parametrize("method", ["command", "fetch"])
def test_an_async_check_is_awaited_before_reuse(method: str) -> None:
    # An async def method waits in the loop (aget); a plain method returning a coroutine
    # (redis.asyncio's commands) is deferred to it when its instance must be checked first.
    checked: list[int] = []

    async def alive(client: AsyncFake) -> bool:
        checked.append(client.id)
        await asyncio.sleep(0)
        return False  # dead: replace it

    proxy = safeclients.pooled(AsyncFake, size=1, timeout=5.0, check=alive)

    async def main() -> tuple[Any, Any]:
        call = getattr(proxy, method)
        return await call(1), await call(2)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, second = asyncio.run(main())
    never_awaited = [w for w in caught if "never awaited" in str(w.message)]
    assert not never_awaited, never_awaited
    assert checked == [first[0]], "the check ran, awaited, before the instance's reuse"
    assert second[0] != first[0], "the check said dead: the instance was replaced"


def test_a_pool_timeout_does_not_blame_the_free_list() -> None:
    proxy = safeclients.pooled(FakeClient, size=1, timeout=0.01)
    with safeclients.checkout(proxy):
        with pytest.raises(safeclients.PoolTimeout) as caught:
            in_thread(proxy.ping)
    error = caught.value
    assert error.__context__ is None or error.__suppress_context__, (
        f"the PoolTimeout's traceback blames {type(error.__context__).__name__}"
    )


def test_a_creation_task_cut_off_leaves_no_unretrieved_error() -> None:
    # A plain method's first call starts the async factory in a task of its own; a
    # BaseException there (gevent.Timeout-like) gives the slot back and is logged, never left
    # to the loop as "Task exception was never retrieved"; the waiting call tries again.
    attempts: list[int] = []

    async def factory() -> AsyncFake:
        attempts.append(1)
        if len(attempts) == 1:
            raise Cutoff
        return AsyncFake()

    proxy = safeclients.pooled(factory, size=1, timeout=5.0)
    unhandled: list[dict[str, Any]] = []

    async def main() -> Any:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: unhandled.append(ctx))
        return await proxy.command("k")

    assert asyncio.run(main())[1] == "k"
    assert not unhandled, unhandled
    assert len(attempts) == 2 and safeclients.stats(proxy).live == 0
