"""The detector: a real two-thread overlap, in each on_conflict mode."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

import safeclients
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
