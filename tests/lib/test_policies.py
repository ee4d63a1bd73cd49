"""Unit tests of each policy with a fake client (one process, few threads, no sockets)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

import safeclients
from tests.lib.fakes import BrokenConnectionError, FakeClient

# Every test here runs over both call paths (tests/lib/conftest.py).
pytestmark = pytest.mark.usefixtures("call_path")

JOIN = 30.0


def in_thread(func: Callable[[], Any]) -> Any:
    """Run func in a new thread and return its result (re-raising its exception)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = func()
        except BaseException as exc:  # handed back to the test thread
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(JOIN)
    assert not thread.is_alive(), "worker thread did not finish"
    if "error" in box:
        raise box["error"]
    return box["result"]


# -- per_thread ------------------------------------------------------------------------------


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


# -- locked ----------------------------------------------------------------------------------


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


# -- pooled ----------------------------------------------------------------------------------


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


# -- common ----------------------------------------------------------------------------------


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
