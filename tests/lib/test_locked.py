"""``locked``: one instance under a lock (fake client; no sockets)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

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


def test_async_with_a_locked_proxy_is_refused() -> None:
    # Its lock is reentrant in the thread: every task of the loop would be let into the one
    # instance at once. Refused, with the way out.
    class AsyncBox(FakeClient):
        async def __aenter__(self) -> AsyncBox:
            return self

        async def __aexit__(self, *exc: object) -> None:
            return None

    proxy = safeclients.locked(AsyncBox)

    async def block() -> None:
        async with proxy:
            pass  # pragma: no cover (refused)

    async def main() -> list[Any]:
        return list(await asyncio.gather(block(), block(), block(), return_exceptions=True))

    errors = asyncio.run(main())
    assert all(isinstance(error, safeclients.AsyncUseError) for error in errors), errors
    assert "per_loop" in str(errors[0]) and "pooled" in str(errors[0])
