"""What every policy does alike (fake client; one process, few threads, no sockets).

Each policy's own behaviour: ``test_<policy>.py``."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable
from typing import Any

import pytest

import safeclients
from tests.lib.fakes import AsyncFake, FakeClient
from tests.lib.threads import in_thread

# Every test here runs over both call paths (tests/lib/conftest.py).
pytestmark = pytest.mark.usefixtures("call_path")


@pytest.mark.parametrize("make", [safeclients.per_thread, safeclients.locked, safeclients.pooled])
def test_bare_decorator_and_is_proxy(make: Callable[..., Any]) -> None:
    @make
    def client() -> FakeClient:
        return FakeClient()

    assert safeclients.is_proxy(client)
    assert not safeclients.is_proxy(FakeClient())
    assert isinstance(client, FakeClient)
    assert client.ping(3)[1] == 3
    assert safeclients.stats(client).policy == make.__name__


@pytest.mark.parametrize(
    "make", [safeclients.per_thread, safeclients.locked, safeclients.pooled, safeclients.guarded]
)
def test_attributes_and_instance_state_are_forwarded(make: Callable[..., Any]) -> None:
    proxy = make(FakeClient)
    proxy.ping()
    assert proxy.id >= 1
    assert len(proxy.calls) >= 1
    if make is safeclients.pooled:
        # One instance of the pool, chosen at random, would change: refused, with the way.
        with pytest.raises(safeclients.SharedStateError, match="factory"):
            proxy.label = "set through the proxy"
        with pytest.raises(safeclients.SharedStateError, match="checkout"):
            del proxy.label
        with safeclients.checkout(proxy) as client:
            proxy.label = "set in a block"
            assert client.label == "set in a block", "set on the block's instance"
            del proxy.label
            assert not hasattr(client, "label")
    else:
        proxy.label = "set through the proxy"
        assert proxy.label == "set through the proxy"
    with pytest.raises(AttributeError):
        proxy.no_such_attribute  # noqa: B018


@pytest.mark.parametrize(
    "make", [safeclients.per_thread, safeclients.locked, safeclients.pooled, safeclients.guarded]
)
def test_stats_is_frozen(make: Callable[..., Any]) -> None:
    stats = safeclients.stats(make(FakeClient))
    with pytest.raises(AttributeError):
        stats.created = 5  # type: ignore[misc]


def test_control_functions_refuse_non_proxies() -> None:
    with pytest.raises(TypeError):
        safeclients.stats(FakeClient())
    with pytest.raises(TypeError):
        safeclients.dispose(object())


def test_a_kept_method_still_follows_the_policy() -> None:
    proxy = safeclients.per_thread(FakeClient)
    ping = proxy.ping
    mine = ping()[0]
    assert in_thread(lambda: ping()[0]) != mine, "called in another thread: that thread's instance"


def test_unknown_names_fall_back_to_getattr_and_stay_safe(call_path: str) -> None:
    proxy = safeclients.pooled(lambda: FakeClient(), size=1, timeout=0)
    proxy.ping()
    installed = "ping" in vars(type(proxy))
    assert installed == (call_path == "forwarder"), f"forwarder installed: {installed}"
    whoami = proxy.whoami
    with safeclients.checkout(proxy) as client:
        assert whoami()[0] == client.id, "a call-through kept earlier runs on the block's one"
        with pytest.raises(safeclients.PoolTimeout):
            in_thread(whoami)
    assert whoami()[0] >= 1


def test_with_block_on_locked_proxy_holds_the_lock() -> None:
    class Session(FakeClient):
        def __enter__(self) -> Session:
            return self

        def __exit__(self, *exc_info: object) -> None:
            pass

    proxy = safeclients.locked(Session, timeout=0)
    with proxy as session:
        assert isinstance(session, Session)
        assert proxy.ping()[0] == session.id, "the block's own calls go in"
        with pytest.raises(safeclients.LockTimeout):
            in_thread(proxy.ping)
    assert in_thread(proxy.ping)[0] == session.id


@pytest.mark.parametrize(
    "make", [safeclients.per_thread, safeclients.per_process, safeclients.guarded]
)
def test_an_async_instance_is_bound_to_its_loop_in_every_policy(make: Any) -> None:
    # One asyncio.run() after another (a script, a test suite, a sync app calling an async
    # client): the instance a loop used is closed inside that loop at its end, and the next
    # loop gets its own. It used to be reused: "Future attached to a different loop".
    proxy = make(AsyncFake)
    first = asyncio.run(proxy.fetch("a"))
    second = asyncio.run(proxy.fetch("b"))
    assert first[1] == "a" and second[1] == "b" and first[0] != second[0]
    stats = safeclients.stats(proxy)
    assert (stats.created, stats.closed, stats.close_failed, stats.live) == (2, 2, 0, 0), stats


def test_a_sync_client_awaited_once_is_not_bound_to_the_loop() -> None:
    # A sync client with an async helper method is no async client: a loop's end leaves it.
    class SyncWithHelper(FakeClient):
        async def helper(self) -> int:
            return self.id

    proxy = safeclients.per_thread(SyncWithHelper)
    made = asyncio.run(proxy.helper())
    assert proxy.ping()[0] == made and safeclients.stats(proxy).closed == 0


@pytest.mark.parametrize(
    "make", [safeclients.per_thread, safeclients.per_process, safeclients.guarded]
)
def test_binding_an_instance_to_its_loop_keeps_no_loop_alive(make: Any) -> None:
    # One asyncio.run() per request in a sync app: the step that retires each loop's
    # instance at its shutdown must not keep that loop (and its selector) alive afterwards.
    proxy = make(AsyncFake)
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def use(n: int) -> Any:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        return await proxy.fetch(n)

    for n in range(5):
        assert asyncio.run(use(n))[1] == n
    gc.collect()
    assert [ref for ref in loops if ref() is not None] == [], "a finished loop is kept alive"
    # Loops closed by hand, with no shutdown step: at most the latest is still referenced (the
    # binding of the instance it used); the shutdown steps that never ran keep none alive.
    for n in range(5):
        loop = asyncio.new_event_loop()
        try:
            assert loop.run_until_complete(use(n))[1] == n
        finally:
            loop.close()
        del loop
        safeclients.dispose(proxy)  # the instance a closed loop used cannot serve the next
    gc.collect()
    alive = [ref for ref in loops[5:] if ref() is not None]
    assert len(alive) <= 1, f"{len(alive)} loops closed by hand are kept alive"


@pytest.mark.parametrize(
    "make", [safeclients.per_thread, safeclients.per_process, safeclients.guarded]
)
def test_an_instance_of_a_loop_closed_by_hand_heals_after_one_failure(make: Any) -> None:
    # The older idiom, `loop.run_until_complete(...); loop.close()`, runs no shutdown step: the
    # instance stays bound to a closed loop. The next loop's first call meets the client's own
    # error; the instance is retired then, and the loop's later calls run on one of its own (it
    # used to fail for ever: "attached to a different loop").
    proxy = make(AsyncFake)

    def in_new_loop(*keys: int) -> list[Any]:
        loop = asyncio.new_event_loop()
        outcomes: list[Any] = []
        try:
            for key in keys:
                try:
                    outcomes.append(loop.run_until_complete(proxy.fetch(key))[1])
                except RuntimeError as error:
                    outcomes.append(str(error))
        finally:
            loop.close()
        return outcomes

    assert in_new_loop(1) == [1]
    assert in_new_loop(2, 3, 4) == ["Future attached to a different loop", 3, 4]
