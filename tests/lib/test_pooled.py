"""``pooled``: a bounded LIFO pool (fake client; no sockets)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import safeclients
from tests.lib.fakes import BrokenConnectionError, FakeClient
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
