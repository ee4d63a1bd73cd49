"""``locked``: one instance under a lock (fake client; no sockets)."""

from __future__ import annotations

import threading

import pytest

import safeclients
from tests.lib.fakes import FakeClient
from tests.lib.threads import JOIN, in_thread

# Every test here runs over both call paths (tests/lib/conftest.py).
pytestmark = pytest.mark.usefixtures("call_path")


def test_locked_factory_is_lazy_and_shared() -> None:
    made: list[int] = []

    @safeclients.locked
    def client() -> FakeClient:
        made.append(1)
        return FakeClient()

    assert made == []
    ident = client.ping()[0]
    assert in_thread(lambda: client.ping()[0]) == ident
    assert made == [1]


def test_locked_wraps_existing_instance() -> None:
    raw = FakeClient()
    proxy = safeclients.locked(raw)
    assert proxy.ping("x") == (raw.id, "x")
    with safeclients.checkout(proxy) as client:
        assert client is raw


def test_locked_checkout_holds_the_lock() -> None:
    proxy = safeclients.locked(FakeClient)
    entered = threading.Event()
    box: list[bool] = []
    with safeclients.checkout(proxy) as client:
        assert isinstance(client, FakeClient)
        proxy.ping()  # re-entrant in the same thread

        def other() -> None:
            entered.set()
            box.append(True)
            proxy.ping()

        thread = threading.Thread(target=other)
        thread.start()
        assert entered.wait(JOIN)
        thread.join(0.2)
        assert thread.is_alive(), "the other thread got in while the block held the lock"
    thread.join(JOIN)
    assert not thread.is_alive()
    stats = safeclients.stats(proxy)
    assert stats.waits == 1 and stats.wait_seconds > 0


def test_locked_discards_broken_instance_when_it_has_a_factory() -> None:
    proxy = safeclients.locked(FakeClient)
    first = proxy.ping()[0]
    with pytest.raises(OSError):
        proxy.fail(ConnectionResetError("reset"))
    assert proxy.ping()[0] != first
    assert safeclients.stats(proxy).discarded == 1


def test_locked_with_arguments_decorator() -> None:
    closed: list[int] = []

    @safeclients.locked(close=lambda c: closed.append(c.id))
    def client() -> FakeClient:
        return FakeClient()

    ident = client.ping()[0]
    safeclients.dispose(client)
    assert closed == [ident]
