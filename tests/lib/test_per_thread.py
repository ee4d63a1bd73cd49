"""``per_thread``: each thread its own instance (fake client; no sockets)."""

from __future__ import annotations

import threading

import pytest

import safeclients
from tests.lib.fakes import BrokenConnectionError, FakeClient
from tests.lib.threads import JOIN, in_thread

# Every test here runs over both call paths (tests/lib/conftest.py).
pytestmark = pytest.mark.usefixtures("call_path")


def test_per_thread_gives_each_thread_its_own_instance() -> None:
    proxy = safeclients.per_thread(FakeClient)
    mine = proxy.whoami()
    again = proxy.whoami()
    other = in_thread(proxy.whoami)
    assert mine == again
    assert other[0] != mine[0]
    assert other[2] != mine[2], "the other thread's instance was created in the other thread"
    assert safeclients.stats(proxy).created == 2


def test_per_thread_closes_instance_when_thread_ends() -> None:
    proxy = safeclients.per_thread(FakeClient)
    created: list[FakeClient] = []

    def use() -> None:
        with safeclients.checkout(proxy) as client:
            created.append(client)

    in_thread(use)
    assert created[0].close_calls == 1
    stats = safeclients.stats(proxy)
    assert (stats.created, stats.closed, stats.live) == (1, 1, 0)


def test_per_thread_close_argument_is_used() -> None:
    closed: list[int] = []
    proxy = safeclients.per_thread(FakeClient, close=lambda c: closed.append(c.id))
    ident = in_thread(lambda: proxy.ping()[0])
    assert closed == [ident]


def test_per_thread_discards_broken_instance() -> None:
    proxy = safeclients.per_thread(FakeClient)
    first = proxy.ping()[0]
    with pytest.raises(BrokenConnectionError):
        proxy.fail(BrokenConnectionError("connection reset"))
    with pytest.raises(ValueError):
        proxy.fail(ValueError("not a connection problem"))
    second = proxy.ping()[0]
    assert second != first
    stats = safeclients.stats(proxy)
    assert (stats.created, stats.discarded, stats.live) == (2, 1, 1)


def test_per_thread_dispose_closes_each_threads_instance_in_that_thread() -> None:
    """dispose() never closes an instance another thread may be inside (nor from a thread the
    client may refuse, as sqlite3 does): that thread closes it at its next use or its exit."""
    closed_in: dict[int, int] = {}

    def close(client: FakeClient) -> None:
        closed_in[client.id] = threading.get_ident()
        client.close()

    proxy = safeclients.per_thread(FakeClient, close=close)
    ready, release, reused = threading.Event(), threading.Event(), threading.Event()
    ids: list[int] = []
    idents: list[int] = []

    def other() -> None:
        idents.append(threading.get_ident())
        ids.append(proxy.ping()[0])
        ready.set()
        assert release.wait(JOIN)
        ids.append(proxy.ping()[0])  # first use after the dispose: closes the old one here
        reused.set()

    thread = threading.Thread(target=other)
    thread.start()
    try:
        assert ready.wait(JOIN)
        mine = proxy.ping()[0]
        safeclients.dispose(proxy)
        assert closed_in == {mine: threading.get_ident()}, "only the caller's own, now"
        assert safeclients.stats(proxy).live == 1, "the other thread's is still open"
        assert proxy.ping()[0] != mine
    finally:
        release.set()
        thread.join(JOIN)
    assert reused.is_set()
    assert closed_in[ids[0]] == idents[0], "closed by its own thread"
    assert ids[1] != ids[0], "the other thread got a fresh instance"
    assert safeclients.stats(proxy).closed == 3, "mine, the other's old one, the other's new one"
