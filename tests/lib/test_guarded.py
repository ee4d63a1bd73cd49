"""The detector: a real two-thread overlap, in each on_conflict mode."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest

import safeclients
from safeclients._proxy import policy_of
from tests.lib.fakes import UnsafeClient

JOIN = 30.0


class SlowClient:
    """``wait_inside`` blocks inside the client until told to leave."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.leave = threading.Event()

    def wait_inside(self) -> str:
        self.entered.set()
        assert self.leave.wait(JOIN)
        return "left"

    def submit_job(self, payload: str) -> str:
        return payload[::-1]


def overlap(proxy: Any, client: SlowClient) -> Any:
    """Thread 'first-user' sits in wait_inside(); the test thread calls submit_job()."""
    result: list[str] = []
    first = threading.Thread(target=lambda: result.append(proxy.wait_inside()), name="first-user")
    first.start()
    try:
        assert client.entered.wait(JOIN)
        return proxy.submit_job("abc")
    finally:
        client.leave.set()
        first.join(JOIN)
        assert result == ["left"], "the first thread's call was not disturbed"


def test_overlap_raises_with_both_threads_methods_and_other_stack() -> None:
    client = SlowClient()
    proxy = safeclients.guarded(client)
    threading.current_thread().name, old_name = "second-user", threading.current_thread().name
    try:
        with pytest.raises(safeclients.ConcurrentUseError) as info:
            overlap(proxy, client)
    finally:
        threading.current_thread().name = old_name
    message = str(info.value)
    assert "'second-user'" in message and "'first-user'" in message
    assert "SlowClient.submit_job()" in message and "SlowClient.wait_inside()" in message
    assert "Stack of thread 'first-user'" in message
    assert "in wait_inside" in message, "the other thread's stack shows where it is"
    assert safeclients.stats(proxy).conflicts == 1
    assert proxy.submit_job("xyz") == "zyx", "no conflict once the first thread left"


def test_warn_mode_logs_and_proceeds(caplog: pytest.LogCaptureFixture) -> None:
    client = SlowClient()
    proxy = safeclients.guarded(client, on_conflict="warn")
    with caplog.at_level(logging.WARNING, logger="safeclients"):
        assert overlap(proxy, client) == "cba"
    assert "SlowClient.wait_inside()" in caplog.text
    assert safeclients.stats(proxy).conflicts == 1


def test_count_mode_only_counts(caplog: pytest.LogCaptureFixture) -> None:
    client = SlowClient()
    proxy = safeclients.guarded(client, on_conflict="count")
    with caplog.at_level(logging.WARNING, logger="safeclients"):
        assert overlap(proxy, client) == "cba"
    assert caplog.text == ""
    assert safeclients.stats(proxy).conflicts == 1


def test_checkout_block_counts_as_a_use() -> None:
    client = SlowClient()
    proxy = safeclients.guarded(client, on_conflict="count")
    with safeclients.checkout(proxy) as raw:
        assert raw is client
        thread = threading.Thread(target=lambda: proxy.submit_job("a"))
        thread.start()
        thread.join(JOIN)
    assert safeclients.stats(proxy).conflicts == 1


def test_guarded_catches_real_hammering() -> None:
    proxy = safeclients.guarded(UnsafeClient, on_conflict="count")
    barrier = threading.Barrier(8)

    def run() -> None:
        barrier.wait(JOIN)
        for n in range(200):
            proxy.echo(n)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN)
    assert safeclients.stats(proxy).conflicts > 0


def test_sequential_use_from_many_threads_is_not_a_conflict() -> None:
    proxy = safeclients.guarded(SlowClient)
    for _ in range(20):
        thread = threading.Thread(target=lambda: proxy.submit_job("x"))
        thread.start()
        thread.join(JOIN)
    assert safeclients.stats(proxy).conflicts == 0


# -- asyncio tasks: one thread, two contexts ---------------------------------------------------


class AsyncSlow:
    """``query`` awaits ``gate`` while inside the client; ``quick`` never suspends."""

    def __init__(self) -> None:
        self.entered: asyncio.Event | None = None
        self.gate: asyncio.Event | None = None

    async def query(self) -> str:
        assert self.entered is not None and self.gate is not None
        self.entered.set()
        await asyncio.wait_for(self.gate.wait(), JOIN)
        return "left"

    async def quick(self, n: int) -> int:
        return n

    def sync(self, n: int) -> int:
        return n


async def overlap_tasks(proxy: Any, client: AsyncSlow) -> Any:
    """Task 'first-task' sits in query(); task 'second-task' calls quick()."""
    client.entered, client.gate = asyncio.Event(), asyncio.Event()

    async def first_user() -> str:
        return str(await proxy.query())

    async def second_user() -> int:
        return int(await proxy.quick(7))

    first = asyncio.create_task(first_user(), name="first-task")
    try:
        await asyncio.wait_for(client.entered.wait(), JOIN)
        second = asyncio.create_task(second_user(), name="second-task")
        return await asyncio.wait_for(asyncio.gather(second, return_exceptions=True), JOIN)
    finally:
        client.gate.set()
        assert await asyncio.wait_for(first, JOIN) == "left", "the first task was disturbed"


def test_two_tasks_of_one_loop_overlapping_raise(call_path: str) -> None:
    client = AsyncSlow()
    proxy = safeclients.guarded(client)
    [outcome] = asyncio.run(overlap_tasks(proxy, client))
    assert isinstance(outcome, safeclients.ConcurrentUseError), outcome
    message = str(outcome)
    assert "asyncio task 'second-task'" in message and "asyncio task 'first-task'" in message
    if call_path == "forwarder":  # the generic path names no method (a generic use)
        assert "AsyncSlow.quick()" in message and "AsyncSlow.query()" in message
    assert "Stack of asyncio task 'first-task'" in message
    assert "in query" in message, "the other task's stack shows where it waits"
    assert safeclients.stats(proxy).conflicts == 1


def test_two_tasks_of_one_loop_overlapping_are_counted(call_path: str) -> None:
    client = AsyncSlow()
    proxy = safeclients.guarded(client, on_conflict="count")
    assert asyncio.run(overlap_tasks(proxy, client)) == [7]
    # The generic path makes two uses of `proxy.quick(7)`: reading the attribute, calling it.
    assert safeclients.stats(proxy).conflicts == (1 if call_path == "forwarder" else 2)
    inside = policy_of(proxy).inside  # type: ignore[attr-defined]
    assert not inside, "every use left, the awaited ones too"


def test_tasks_that_merely_alternate_are_not_conflicts(call_path: str) -> None:
    proxy = safeclients.guarded(AsyncSlow)

    async def worker(n: int) -> int:
        total = 0
        for i in range(20):
            total += await proxy.quick(i) + proxy.sync(n)
            await asyncio.sleep(0)  # the other tasks run between this task's uses
        return total

    async def main() -> list[int]:
        return await asyncio.gather(*(worker(n) for n in range(16)))

    assert asyncio.run(main()) == [190 + 20 * n for n in range(16)]
    assert safeclients.stats(proxy).conflicts == 0
    assert not policy_of(proxy).inside  # type: ignore[attr-defined]
