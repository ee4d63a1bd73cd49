"""Regression tests for the adversarial pass (issue 15): each failed on the code before the fix.

Item numbers refer to the issue. Fake clients, no sockets; forks through ``tests.lib.forking``.
"""

from __future__ import annotations

import asyncio
import doctest
import gc
import importlib
import inspect
import pickle
import sqlite3
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

import pytest

import safeclients
from safeclients._proxy import policy_of
from tests.lib.fakes import BrokenConnectionError, FakeClient
from tests.lib.forking import FORKS, run_in_child
from tests.lib.threads import in_thread

JOIN = 30.0

guarded_module = importlib.import_module("safeclients.guarded")

POLICIES: dict[str, Callable[..., Any]] = {
    "per_thread": safeclients.per_thread,
    "locked": safeclients.locked,
    "pooled": safeclients.pooled,
}


class Stream(FakeClient):
    """A request/reply client: ``ask(key)`` sends, ``reply()`` reads the oldest unread reply.
    A call cut off between the two leaves a reply nobody read."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[str] = []

    def ask(self, key: str, interrupt: BaseException | None = None) -> str:
        self.pending.append(f"value-of-{key}")
        if interrupt is not None:
            raise interrupt
        return self.pending.pop(0)


# -- 1: `async with proxy:` gives back its own instance ---------------------------------------


def test_1_async_with_blocks_of_two_coroutines_give_back_their_own_instance() -> None:
    class AsyncBox(FakeClient):
        async def __aenter__(self) -> AsyncBox:
            return self

        async def __aexit__(self, *exc: object) -> None:
            return None

    proxy = safeclients.pooled(AsyncBox, size=2, timeout=0)
    first_in, second_in, first_out = asyncio.Event(), asyncio.Event(), asyncio.Event()
    seen: dict[str, int] = {}

    async def first() -> None:
        async with proxy as box:
            seen["first"] = box.id
            first_in.set()
            await second_in.wait()
        first_out.set()

    async def second() -> None:
        await first_in.wait()
        async with proxy as box:
            seen["second"] = box.id
            second_in.set()
            await first_out.wait()
            # The first block ended: its instance is free again, ours must still be held. A
            # block nested in ours runs on ours; a new task's block (a copy of our context)
            # must not take our pinned instance.
            async with proxy as nested:
                seen["nested"] = nested.id
            await asyncio.create_task(third())

    async def third() -> None:
        async with proxy as box:
            seen["third"] = box.id

    async def main() -> None:
        await asyncio.wait_for(asyncio.gather(first(), second()), JOIN)

    asyncio.run(main())
    assert seen["first"] != seen["second"]
    assert seen["nested"] == seen["second"], "a nested block left its context's instance"
    assert seen["third"] == seen["first"], "the third block got an instance still in use"


# -- 3: a call cut off by a BaseException discards its instance -------------------------------


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_3_interrupted_call_discards_the_instance(name: str) -> None:
    proxy = POLICIES[name](Stream)
    with pytest.raises(KeyboardInterrupt):
        proxy.ask("alice", KeyboardInterrupt())
    assert proxy.ask("bob") == "value-of-bob", "the next caller read the interrupted reply"
    assert safeclients.stats(proxy).discarded == 1


# -- 4: dispose never closes an instance under a running call ---------------------------------


def test_4_guarded_dispose_waits_for_the_call_inside() -> None:
    entered, release = threading.Event(), threading.Event()

    class Slow(FakeClient):
        def slow(self) -> int:
            entered.set()
            assert release.wait(JOIN)
            return self.close_calls

    proxy = safeclients.guarded(Slow)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(proxy.slow()))
    thread.start()
    try:
        assert entered.wait(JOIN)
        client = policy_of(proxy).existing()
        safeclients.dispose(proxy)
        assert client.close_calls == 0, "closed while a thread was inside a call on it"
    finally:
        release.set()
        thread.join(JOIN)
    assert result == [0] and client.close_calls == 1, "closed by the last thread out"


# -- 5: a single exception class as discard_on -------------------------------------------------


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_5_single_class_discard_on_means_that_class(name: str) -> None:
    proxy = POLICIES[name](FakeClient, discard_on=ConnectionError)
    first = proxy.ping()[0]
    with pytest.raises(ValueError):
        proxy.fail(ValueError("not a connection problem"))
    assert proxy.ping()[0] == first, "an unrelated error discarded the instance"
    with pytest.raises(ConnectionError):
        proxy.fail(ConnectionError("gone"))
    assert proxy.ping()[0] != first


def test_5_discard_on_of_the_wrong_kind_is_refused() -> None:
    with pytest.raises(TypeError, match="exception class"):
        safeclients.pooled(FakeClient, discard_on=42)  # type: ignore[call-overload]


# -- 6: a checkout object cannot be reused -----------------------------------------------------


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_6_reentering_one_checkout_object_is_refused(name: str) -> None:
    proxy = POLICIES[name](FakeClient)
    block = safeclients.checkout(proxy)
    with block:
        with pytest.raises(safeclients.CheckoutReused):
            with block:
                pass
    with pytest.raises(safeclients.CheckoutReused):
        with block:
            pass
    # Nothing leaked: the lock or the slot is free for another thread.
    assert in_thread(lambda: proxy.ping()[0]) >= 1


# -- 7: hash and equality do not change with the thread ---------------------------------------


def test_7_a_dict_keyed_by_a_per_thread_proxy_finds_it_from_another_thread() -> None:
    class Hashable(FakeClient):
        def __hash__(self) -> int:
            return self.id

    proxy = safeclients.per_thread(Hashable)
    table = {proxy: "found"}
    assert in_thread(lambda: table.get(proxy)) == "found"


# -- 8: the detector's frame snapshot runs with no garbage collection on CPython < 3.12 --------


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="the CPython bug is fixed there")
def test_8_no_collection_while_the_detector_reads_other_threads_frames(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    states: list[bool] = []
    real = sys._current_frames

    def spy() -> dict[int, types.FrameType]:
        states.append(gc.isenabled())
        return real()

    monkeypatch.setattr(guarded_module.sys, "_current_frames", spy)
    frames = guarded_module._current_frames()
    assert states == [False] and gc.isenabled() and frames


# -- 9: a discard_on predicate that raises leaks nothing ---------------------------------------


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_9_raising_predicate_neither_leaks_nor_hides_the_error(name: str) -> None:
    def predicate(exc: BaseException) -> bool:
        raise RuntimeError("predicate bug")

    kwargs = {"size": 1, "timeout": 0} if name == "pooled" else {}
    if name == "locked":
        kwargs = {"timeout": 0}
    proxy = POLICIES[name](FakeClient, discard_on=predicate, **kwargs)
    for _ in range(3):
        with pytest.raises(BrokenConnectionError):
            proxy.fail(BrokenConnectionError("original"))
        with pytest.raises(BrokenConnectionError):
            with safeclients.checkout(proxy) as client:
                client.fail(BrokenConnectionError("original"))
    assert in_thread(lambda: proxy.ping()[0]) >= 1, "the lock or slot leaked"


# -- 10: locked has a timeout ------------------------------------------------------------------


def test_10_locked_waiter_times_out_with_a_named_error() -> None:
    proxy = safeclients.locked(FakeClient, timeout=0.05)
    with safeclients.checkout(proxy):
        error = in_thread(lambda: _raised(proxy.ping))
    assert isinstance(error, safeclients.LockTimeout)
    assert isinstance(error, safeclients.PoolTimeout) and "0.05 s" in str(error)


def _raised(func: Callable[[], Any]) -> BaseException | None:
    try:
        func()
    except BaseException as exc:
        return exc
    return None


# -- 12: a proxy created in a hookless-fork child, before its first check ----------------------


@pytest.mark.parametrize("fork", FORKS.values(), ids=FORKS.keys())
@pytest.mark.parametrize("make", [safeclients.locked, safeclients.guarded])
def test_12_proxy_made_in_the_child_around_its_own_instance_works(
    fork: Callable[[], int], make: Callable[..., Any]
) -> None:
    safeclients.per_thread(FakeClient).ping()  # a proxy exists and was used in the parent

    def child() -> Any:
        proxy = make(FakeClient())
        return proxy.ping()[1] is None

    assert run_in_child(fork, child) is True


# -- 13: timeouts that cannot work are refused when the proxy is made --------------------------


@pytest.mark.parametrize("timeout", [float("inf"), 1e12, float("nan"), -1])
def test_13_unusable_timeouts_are_refused_at_creation(timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        safeclients.pooled(FakeClient, timeout=timeout)
    with pytest.raises(ValueError, match="timeout"):
        safeclients.locked(FakeClient, timeout=timeout)


def test_13_timeout_none_waits_without_limit() -> None:
    proxy = safeclients.pooled(FakeClient, size=1, timeout=None)
    with safeclients.checkout(proxy) as held:
        got: list[int] = []
        thread = threading.Thread(target=lambda: got.append(proxy.ping()[0]))
        thread.start()
        thread.join(0.05)
        assert thread.is_alive() and not got, "the waiter gave up or got in"
    thread.join(JOIN)
    assert got == [held.id]


# -- 14: introspection of a module that holds a proxy ------------------------------------------


def test_14_introspection_neither_crashes_nor_creates() -> None:
    made: list[int] = []

    def factory() -> FakeClient:
        made.append(1)
        return FakeClient()

    module = types.ModuleType("app_with_globals")
    module.pool = safeclients.pooled(factory)  # type: ignore[attr-defined]
    module.local = safeclients.per_thread(factory)  # type: ignore[attr-defined]
    module.lock = safeclients.locked(factory)  # type: ignore[attr-defined]
    for proxy in (module.pool, module.local, module.lock):  # type: ignore[attr-defined]
        assert not hasattr(proxy, "__wrapped__")
        assert inspect.unwrap(proxy) is proxy
        inspect.getmodule(proxy)
    doctest.DocTestFinder().find(module)
    assert made == [], "introspection created a client"


# -- 15: forking inside a block -----------------------------------------------------------------


@pytest.mark.parametrize("fork", FORKS.values(), ids=FORKS.keys())
@pytest.mark.parametrize("name", sorted(POLICIES))
def test_15_a_child_forked_inside_a_block_leaves_it_cleanly(
    fork: Callable[[], int], name: str
) -> None:
    proxy = POLICIES[name](FakeClient)
    block = safeclients.checkout(proxy)
    parent_client = block.__enter__()

    def child() -> Any:
        block.__exit__(None, None, None)  # the rest of the block runs in the child too
        return proxy.ping()[0] != parent_client.id

    try:
        assert run_in_child(fork, child) is True
    finally:
        block.__exit__(None, None, None)
    assert proxy.ping()[0] == parent_client.id


# -- 16: dotted callables keep their attributes ------------------------------------------------


def test_16_callable_attribute_with_attributes_of_its_own() -> None:
    class Method:
        def __init__(self, client: Any, path: str) -> None:
            self._client, self._path = client, path

        def __call__(self, *args: Any) -> Any:
            return (self._path, self._client.id, args)

        def __getattr__(self, name: str) -> Method:
            return Method(self._client, f"{self._path}.{name}")

    class RPC(FakeClient):
        def __getattr__(self, name: str) -> Method:
            return Method(self, name)

    for make in POLICIES.values():
        proxy = make(RPC)
        path, _, args = proxy.system.listMethods(1)
        assert (path, args) == ("system.listMethods", (1,))


# -- 18: a close callback that uses the proxy --------------------------------------------------


def test_18_close_callback_using_the_proxy_creates_nothing() -> None:
    holder: dict[str, Any] = {}

    def close(client: FakeClient) -> None:
        holder["proxy"].ping("goodbye")  # logs out through the module global
        client.close()

    proxy = holder["proxy"] = safeclients.per_thread(FakeClient, close=close)
    for _ in range(20):
        in_thread(lambda: proxy.ping()[0])
    stats = safeclients.stats(proxy)
    assert (stats.created, stats.closed, stats.live) == (20, 20, 0)


# -- 19: a close that raises a BaseException ---------------------------------------------------


def test_19_close_raising_keyboardinterrupt_loses_no_pool_slot() -> None:
    def close(client: FakeClient) -> None:
        raise KeyboardInterrupt

    proxy = safeclients.pooled(FakeClient, size=1, timeout=0, close=close)
    # The interrupt reaches the caller (a real Ctrl-C must), after the slot was given back.
    with pytest.raises(KeyboardInterrupt) as caught:
        proxy.fail(BrokenConnectionError())
    assert isinstance(caught.value.__context__, BrokenConnectionError)
    assert proxy.ping()[0] >= 1, "the slot was lost"
    assert safeclients.stats(proxy).close_failed == 1


# -- 20: thread-bound clients are closed by their own thread -----------------------------------


def test_20_dispose_of_per_thread_sqlite_from_another_thread() -> None:
    proxy = safeclients.per_thread(lambda: sqlite3.connect(":memory:"))
    done, release = threading.Event(), threading.Event()

    def worker() -> None:
        proxy.execute("select 1")
        done.set()
        assert release.wait(JOIN)

    thread = threading.Thread(target=worker)
    thread.start()
    assert done.wait(JOIN)
    safeclients.dispose(proxy)  # another thread's connection: sqlite3 forbids closing it here
    release.set()
    thread.join(JOIN)
    stats = safeclients.stats(proxy)
    assert (stats.closed, stats.close_failed, stats.live) == (1, 0, 0)


# -- papercuts ---------------------------------------------------------------------------------


def test_pool_of_one_used_reentrantly_runs_on_the_blocks_instance() -> None:
    class Session(FakeClient):
        def __enter__(self) -> Session:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

    proxy = safeclients.pooled(Session, size=1, timeout=0)
    with proxy as session:
        assert proxy.ping()[0] == session.id
    with safeclients.checkout(proxy) as client:
        assert proxy.ping()[0] == client.id
        error = in_thread(lambda: _raised(proxy.ping))
    assert isinstance(error, safeclients.PoolTimeout), "another thread waits, then times out"
    assert safeclients.stats(proxy).created == 1


def test_every_public_exception_survives_pickle() -> None:
    errors = [
        safeclients.SafeClientsError("x"),
        safeclients.FactoryError("x"),
        safeclients.PoolTimeout(4, 5.0, 5.001, same_context=True),
        safeclients.LockTimeout(1.5, 1.501),
        safeclients.PoolClosed("x"),
        safeclients.CheckoutReused("x"),
        safeclients.ConcurrentUseError("x"),
        safeclients.ForkedUseError("x"),
    ]
    for error in errors:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)
        assert vars(copy) == vars(error)
        # What a handler adds on the way up survives too: notes and attributes of its own.
        _add_note(error, f"while serving request 7 ({type(error).__name__})")
        error.request_id = 7  # type: ignore[attr-defined]
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            copy = pickle.loads(pickle.dumps(error, protocol))
            assert type(copy) is type(error) and str(copy) == str(error)
            assert copy.__notes__ == [f"while serving request 7 ({type(error).__name__})"], (
                f"{type(error).__name__} lost its notes through pickle (protocol {protocol})"
            )
            assert vars(copy) == vars(error), f"{type(error).__name__} lost attributes"


def _add_note(error: BaseException, note: str) -> None:
    # BaseException.add_note is Python >= 3.11; on 3.10 the attribute is the same list.
    if sys.version_info >= (3, 11):
        error.add_note(note)
    else:
        error.__notes__ = [*getattr(error, "__notes__", []), note]


class AppLockTimeout(safeclients.LockTimeout):
    """An application's own timeout class (pickled by name: module level)."""


class AppPoolTimeout(safeclients.PoolTimeout):
    """An application's own timeout class (pickled by name: module level)."""


def test_a_subclass_of_the_timeouts_survives_pickle() -> None:
    for error in (AppLockTimeout(2.0, 2.01), AppPoolTimeout(3, 1.0, 1.01)):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)
        assert vars(copy) == vars(error)


def test_papercut_doc_and_signature_come_from_the_client() -> None:
    class Documented(FakeClient):
        """A client with a docstring."""

        def query(self, sql: str, limit: int = 10) -> list[str]:
            """Run a query."""
            return [sql] * limit

    proxy = safeclients.locked(Documented)
    assert proxy.__doc__ == "A client with a docstring."
    assert str(inspect.signature(proxy.query)) == "(sql: 'str', limit: 'int' = 10) -> 'list[str]'"
    assert proxy.query.__doc__ == "Run a query."


@pytest.mark.parametrize("make", [safeclients.locked, safeclients.guarded])
def test_papercut_an_explicit_none_is_refused(make: Callable[..., Any]) -> None:
    with pytest.raises(safeclients.FactoryError, match="None"):
        make(None)
    assert safeclients.is_proxy(make()(FakeClient)), "the decorator form still works"
