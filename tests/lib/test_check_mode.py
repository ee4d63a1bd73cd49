"""SAFECLIENTS_CHECK=1: policies verify their own invariants and raise loudly if violated."""

from __future__ import annotations

import asyncio
import os
import threading
import types
from typing import Any

import pytest

import safeclients
from safeclients._check import Tracker
from safeclients._proxy import policy_of
from tests.lib.fakes import AsyncFake, FakeClient, UnsafeClient
from tests.lib.forking import FORKS, run_in_child

JOIN = 30.0


@pytest.fixture
def check_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFECLIENTS_CHECK", "1")


def test_variable_is_read_at_proxy_creation(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = safeclients.per_thread(FakeClient)
    monkeypatch.setenv("SAFECLIENTS_CHECK", "1")
    checking = safeclients.per_thread(FakeClient)
    plain.ping()
    checking.ping()
    assert "ping" in vars(type(plain)), "the plain proxy got its fast forwarder"
    assert "ping" in vars(type(checking)), "check mode runs the forwarders production runs"
    assert policy_of(checking).tracker is not None and policy_of(plain).tracker is None


def test_sabotaged_policy_is_caught(check_mode: None) -> None:
    """A per_thread policy made to hand one instance to every thread must raise."""
    inside, tried = threading.Event(), threading.Event()

    class Waiting(UnsafeClient):
        def wait_inside(self) -> bool:
            inside.set()
            return tried.wait(JOIN)  # stays inside until the other thread has tried

    shared = Waiting()
    proxy = safeclients.per_thread(Waiting)
    policy = policy_of(proxy)
    policy.tracker.created(shared)  # type: ignore[union-attr]
    # Sabotage: one "thread-local" for every thread, so every thread gets `shared`.
    policy._local = types.SimpleNamespace(obj=shared)  # type: ignore[attr-defined]
    caught: list[BaseException] = []
    thread = threading.Thread(target=proxy.wait_inside)
    thread.start()
    try:
        assert inside.wait(JOIN)
        try:
            proxy.echo(1)
        except safeclients.ConcurrentUseError as exc:
            caught.append(exc)
    finally:
        tried.set()
        thread.join(JOIN)
    assert caught, "the invariant check missed an instance shared by threads"
    assert "SAFECLIENTS_CHECK" in str(caught[0])


def test_tracker_reports_two_threads_and_foreign_process() -> None:
    tracker = Tracker("pooled")
    obj = FakeClient()
    tracker.created(obj)
    tracker.enter(obj)
    tracker.enter(obj)  # re-entrant in one thread is fine
    errors: list[BaseException] = []

    def other() -> None:
        try:
            tracker.enter(obj)
        except safeclients.ConcurrentUseError as exc:
            errors.append(exc)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join(JOIN)
    assert len(errors) == 1
    tracker.leave(obj)
    tracker.leave(obj)

    def child() -> Any:
        try:
            tracker.enter(obj)
        except safeclients.ForkedUseError as exc:
            return str(exc)
        return "no error"

    assert "created in process" in run_in_child(FORKS["c_fork"], child)


@pytest.mark.parametrize("fork", sorted(FORKS))
def test_checking_policies_stay_quiet_across_a_fork(check_mode: None, fork: str) -> None:
    proxies = [
        safeclients.per_thread(FakeClient),
        safeclients.locked(FakeClient),
        safeclients.pooled(FakeClient, size=2),
    ]
    for proxy in proxies:
        proxy.ping()
    creators, child_pid = run_in_child(
        FORKS[fork], lambda: [[p.whoami()[1] for p in proxies], os.getpid()]
    )
    assert creators == [child_pid] * 3


# -- asyncio tasks: one thread, many contexts --------------------------------------------------


def test_tracker_reports_two_tasks_of_one_thread() -> None:
    tracker = Tracker("pooled")
    obj = FakeClient()
    inside, leave = asyncio.Event, asyncio.Event  # made inside the loop below

    async def main() -> list[Any]:
        entered, done = inside(), leave()

        async def holder() -> None:
            tracker.enter(obj)
            try:
                entered.set()
                await asyncio.wait_for(done.wait(), JOIN)
            finally:
                tracker.leave(obj)

        async def intruder() -> None:
            tracker.enter(obj)

        first = asyncio.create_task(holder())
        await asyncio.wait_for(entered.wait(), JOIN)
        [error] = await asyncio.gather(intruder(), return_exceptions=True)
        done.set()
        await asyncio.wait_for(first, JOIN)
        return [error]

    [error] = asyncio.run(main())
    assert isinstance(error, safeclients.ConcurrentUseError), error
    assert "asyncio task" in str(error)
    tracker.enter(obj)  # the holder left: free again
    tracker.leave(obj)


def test_tracker_lets_tasks_alternate_and_a_use_end_in_another_task() -> None:
    tracker = Tracker("pooled")
    obj = FakeClient()

    async def use() -> None:
        tracker.enter(obj)
        tracker.leave(obj)

    async def begun_here_ended_there() -> None:
        tracker.enter(obj)  # a held awaitable made in this task ...
        await asyncio.create_task(asyncio.sleep(0))
        await asyncio.gather(asyncio.to_thread(tracker.leave, obj))  # ... ended elsewhere

    async def main() -> None:
        await asyncio.gather(*(use() for _ in range(50)))
        await begun_here_ended_there()
        await asyncio.gather(*(use() for _ in range(50)))

    asyncio.run(main())
    assert tracker._users == {}, "every use ended, wherever it ended"


def test_a_busy_async_pool_reports_nothing_and_every_instance_stays_usable(
    check_mode: None, call_path: str
) -> None:
    # Issue 24: false ConcurrentUseErrors on a busy async pool, and the instances then failed
    # on every later use. Commands made in one task are awaited in gather's tasks (the use
    # ends in another task than it began in), async def methods wait for a slot in the loop.
    proxy = safeclients.pooled(AsyncFake, size=4, timeout=JOIN)

    async def request(n: int) -> tuple[Any, Any]:
        first, second = await asyncio.gather(proxy.command(n), proxy.fetch(-n))
        return first[1], second[1]

    async def main() -> list[tuple[Any, Any]]:
        results = []
        for _ in range(3):
            results += await asyncio.gather(*(request(n) for n in range(32)))
        return results

    assert asyncio.run(main()) == [(n, -n) for n in range(32)] * 3
    tracker = policy_of(proxy).tracker
    assert tracker is not None and tracker._users == {}, tracker._users  # type: ignore[union-attr]
    assert safeclients.stats(proxy).discarded == 0


def test_a_pool_handing_one_instance_to_two_tasks_is_caught(check_mode: None) -> None:
    # Sabotage: the free list holds one instance twice, so two tasks of one thread get it at
    # once. Keyed by thread, the tracker saw one user; keyed by task, it sees both.
    proxy = safeclients.pooled(AsyncFake, size=2, timeout=JOIN)
    policy: Any = policy_of(proxy)
    shared = AsyncFake()
    policy.tracker.created(shared)

    async def main() -> list[Any]:
        async def first() -> Any:
            return await proxy.fetch(1)  # inside across the fake's own await

        async def second() -> Any:
            return await proxy.fetch(2)

        policy._own_list(asyncio.get_running_loop())[:] = [shared, shared]  # this loop's idle list
        policy._count = 2
        return list(await asyncio.gather(first(), second(), return_exceptions=True))

    outcomes = asyncio.run(main())
    errors = [o for o in outcomes if isinstance(o, safeclients.ConcurrentUseError)]
    assert len(errors) == 1, f"one of the two tasks must be refused: {outcomes}"
    assert "asyncio task" in str(errors[0])


def test_per_thread_tasks_share_the_threads_instance_without_reports(check_mode: None) -> None:
    # per_thread promises an instance per thread, not per task: its check keys by thread. An
    # awaited call's use lasts until its await ends, then leaves, wherever it was awaited.
    proxy = safeclients.per_thread(AsyncFake)

    async def main() -> list[Any]:
        held = proxy.command(0)  # awaited below, in gather's task
        return list(await asyncio.gather(held, *(proxy.fetch(n) for n in range(1, 16))))

    assert [key for _, key in asyncio.run(main())] == list(range(16))
    tracker = policy_of(proxy).tracker
    assert tracker is not None and tracker._users == {}, "every use ended: nothing stays inside"


def test_per_loop_tasks_share_the_loops_instance_without_reports(check_mode: None) -> None:
    proxy = safeclients.per_loop(AsyncFake)

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(proxy.fetch(n) for n in range(32))))

    assert [key for _, key in asyncio.run(main())] == list(range(32))


def test_calls_on_a_tasks_pinned_instance_end_their_uses(check_mode: None, call_path: str) -> None:
    # Inside `async with checkout(pooled)`, each awaited command runs on the block's instance
    # (the pin) and must end its own use: else the instance, back in the pool, looked used by
    # the block's task forever, and the next task to get it was refused.
    proxy = safeclients.pooled(AsyncFake, size=2, timeout=JOIN)

    async def block(tag: int) -> set[int]:
        seen = set()
        async with safeclients.checkout(proxy) as client:
            seen.add(client.id)
            for _ in range(3):
                seen.add((await proxy.command(tag))[0])
        return seen

    async def main() -> list[set[int]]:
        return await asyncio.gather(*(block(n) for n in range(6)))

    results = asyncio.run(main())
    assert all(len(seen) == 1 for seen in results), results
    tracker = policy_of(proxy).tracker
    assert tracker is not None and tracker._users == {}, tracker._users  # type: ignore[union-attr]
