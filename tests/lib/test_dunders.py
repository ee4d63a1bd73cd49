"""Special methods go to the right instance, in both wrapt modes.

wrapt's C proxy reads its one stored target directly for str(), operators and ``with``; a
per-thread proxy must route each of them to the calling thread's instance. scripts/test.sh runs
this file with the C extension and with WRAPT_DISABLE_EXTENSIONS=1.
"""

from __future__ import annotations

import asyncio
import copy
import math
import os
import pickle
import threading
from typing import Any

import pytest
import wrapt

import safeclients
from safeclients._proxy import Proxy

JOIN = 30.0


class Box:
    """A client-like object with a value that differs per thread and most special methods."""

    def __init__(self) -> None:
        self.value = 1 if threading.current_thread() is threading.main_thread() else 2
        self.entered = 0
        self.items = [self.value] * self.value

    def __str__(self) -> str:
        return f"box{self.value}"

    def __repr__(self) -> str:
        return f"Box({self.value})"

    def __eq__(self, other: object) -> bool:
        return other == self.value

    def __hash__(self) -> int:
        return hash(self.value)

    def __lt__(self, other: int) -> bool:
        return self.value < other

    def __bool__(self) -> bool:
        return True

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Any:
        return iter(self.items)

    def __contains__(self, item: object) -> bool:
        return item in self.items

    def __getitem__(self, index: int) -> int:
        return self.items[index]

    def __setitem__(self, index: int, value: int) -> None:
        self.items[index] = value

    def __add__(self, other: int) -> int:
        return self.value + other

    def __radd__(self, other: int) -> int:
        return other + self.value

    def __mul__(self, other: int) -> int:
        return self.value * other

    def __neg__(self) -> int:
        return -self.value

    def __int__(self) -> int:
        return self.value

    def __index__(self) -> int:
        return self.value

    def __float__(self) -> float:
        return float(self.value)

    def __floor__(self) -> int:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    def __call__(self, x: int) -> int:
        return self.value * 100 + x

    def __enter__(self) -> Box:
        self.entered += 1
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.entered -= 1


def observe(proxy: Any) -> dict[str, Any]:
    with proxy as entered:
        inside = entered.entered
    return {
        "str": str(proxy),
        "repr": repr(proxy).split(" at 0x")[0] + " for " + repr(proxy).split(" for ")[1],
        # Identity, in every thread: a dict keyed by the proxy finds it from any thread.
        "eq": (proxy == proxy, proxy != proxy, proxy == entered.value),
        "hash": hash(proxy) == object.__hash__(proxy),
        "lt": proxy < 2,
        "bool": bool(proxy),
        "len": len(proxy),
        "iter": list(proxy),
        "contains": 2 in proxy,
        "getitem": proxy[0],
        "add": proxy + 10,
        "radd": 10 + proxy,
        "mul": proxy * 3,
        "neg": -proxy,
        "int": int(proxy),
        "index": [0, 1, 2][proxy],
        "float": float(proxy),
        "floor": math.floor(proxy),
        "format": f"{proxy:>3}",
        "call": proxy(5),
        "with": inside,
        "isinstance": isinstance(proxy, Box),
    }


# repr() is not forwarded (it must never wait or create): it names the policy and the type.
REPR = "<safeclients.per_thread proxy for Box>"

EXPECTED = {
    1: {
        "str": "box1",
        "repr": REPR,
        "eq": (True, False, False),
        "hash": True,
        "lt": True,
        "bool": True,
        "len": 1,
        "iter": [1],
        "contains": False,
        "getitem": 1,
        "add": 11,
        "radd": 11,
        "mul": 3,
        "neg": -1,
        "int": 1,
        "index": 1,
        "float": 1.0,
        "floor": 1,
        "format": "  1",
        "call": 105,
        "with": 1,
        "isinstance": True,
    },
    2: {
        "str": "box2",
        "repr": REPR,
        "eq": (True, False, False),
        "hash": True,
        "lt": False,
        "bool": True,
        "len": 2,
        "iter": [2, 2],
        "contains": True,
        "getitem": 2,
        "add": 12,
        "radd": 12,
        "mul": 6,
        "neg": -2,
        "int": 2,
        "index": 2,
        "float": 2.0,
        "floor": 2,
        "format": "  2",
        "call": 205,
        "with": 1,
        "isinstance": True,
    },
}


def test_mode_is_what_the_environment_asks_for() -> None:
    from wrapt import __wrapt__

    assert __wrapt__._using_c_extension == (not os.environ.get("WRAPT_DISABLE_EXTENSIONS"))


def test_per_thread_dunders_reach_the_calling_threads_instance() -> None:
    proxy = safeclients.per_thread(Box)
    assert observe(proxy) == EXPECTED[1]
    result: list[dict[str, Any]] = []
    thread = threading.Thread(target=lambda: result.append(observe(proxy)))
    thread.start()
    thread.join(JOIN)
    assert result == [EXPECTED[2]]
    assert observe(proxy) == EXPECTED[1], "the main thread's instance is untouched"


@pytest.mark.parametrize("make", [safeclients.locked, safeclients.pooled, safeclients.guarded])
def test_dunders_through_other_policies(make: Any) -> None:
    proxy = make(Box)
    expected = dict(EXPECTED[1], repr=REPR.replace("per_thread", make.__name__))
    assert observe(proxy) == expected
    assert proxy == proxy, "both sides are one instance, even for a pool of one"


def test_setitem_and_inplace_go_to_the_instance() -> None:
    proxy = safeclients.per_thread(Box)
    proxy[0] = 7
    assert proxy[0] == 7
    alias = proxy
    alias += 0  # Box has no __iadd__: Python falls back to __add__, which gives a plain int
    assert alias == 1 and safeclients.is_proxy(proxy)


def test_pooled_proxy_equals_itself_with_a_pool_of_one() -> None:
    proxy = safeclients.pooled(Box, size=1, timeout=0)
    assert proxy == proxy and not (proxy != proxy)


def test_repr_never_waits() -> None:
    proxy = safeclients.pooled(Box, size=1, timeout=0)
    with safeclients.checkout(proxy):
        assert "pooled" in repr(proxy)


def test_pooled_with_block_holds_one_instance_for_all_its_calls() -> None:
    proxy = safeclients.pooled(Box, size=1, timeout=0)
    errors: list[BaseException] = []

    def other() -> None:
        try:
            str(proxy)
        except BaseException as exc:
            errors.append(exc)

    with proxy as box:
        assert box.entered == 1
        assert str(proxy) == "box1", "a call inside the block runs on the block's instance"
        thread = threading.Thread(target=other)
        thread.start()
        thread.join(30)
        assert [type(error) for error in errors] == [safeclients.PoolTimeout]
    assert str(proxy) == "box1"


def test_proxies_refuse_copy_and_pickle() -> None:
    proxy = safeclients.per_thread(Box)
    for action in (copy.copy, copy.deepcopy, pickle.dumps):
        with pytest.raises(TypeError, match="cannot be copied"):
            action(proxy)


def test_pooled_has_no_single_wrapped_instance() -> None:
    with pytest.raises(AttributeError, match="checkout"):
        safeclients.pooled(Box).__wrapped__  # noqa: B018
    assert not hasattr(safeclients.pooled(Box), "__wrapped__")


@pytest.mark.parametrize("make", [safeclients.per_thread, safeclients.locked, safeclients.guarded])
def test_wrapped_shows_an_existing_instance_and_never_creates_one(make: Any) -> None:
    made: list[Box] = []

    def factory() -> Box:
        made.append(Box())
        return made[-1]

    proxy = make(factory)
    assert not hasattr(proxy, "__wrapped__") and made == [], "introspection created a client"
    proxy.value  # noqa: B018
    assert proxy.__wrapped__ is made[0]


def _special_names(klass: type) -> set[str]:
    return {name for name in vars(klass) if name.startswith("__") and name.endswith("__")}


# Special names of wrapt's proxies that need no routing through the policy.
_NOT_ROUTED = {
    "__new__",
    "__init__",
    "__getattribute__",
    "__module__",
    "__weakref__",
    "__slots__",
    "__self_setattr__",
    "__self_dict__",
    "__object_proxy__",
    "__class_getitem__",
    "__qualname__",
    "__doc__",
    "__dict__",
    "__init_subclass__",
    "__wrapped_setattr_fixups__",
    "__setattr__",
    "__delattr__",
    "__getattr__",
    "__abstractmethods__",
    "__sizeof__",
    "__reduce_ex__",
    # Python 2 names that wrapt < 2.2's pure-Python proxy still defines; Python 3 never calls them.
    "__getslice__",
    "__setslice__",
    "__delslice__",
    "__hex__",
    "__oct__",
    "__nonzero__",
}


@pytest.mark.parametrize("implementation", ["C", "pure-Python"])
def test_every_special_method_of_wrapts_proxy_is_overridden(implementation: str) -> None:
    if implementation == "C":
        wrappers = pytest.importorskip("wrapt._wrappers")
        base = wrappers.ObjectProxy
    else:
        base = wrapt.wrappers.ObjectProxy
    needed = set()
    for klass in base.__mro__:
        if klass is not object:
            needed |= _special_names(klass)
    missing = sorted(name for name in needed - _NOT_ROUTED if name not in vars(Proxy))
    # __iter__ comes from ObjectProxy (BaseObjectProxy has none); we define it too.
    assert missing == [], f"special methods read wrapt's single target: {missing}"


# -- calling the proxy: a callable client behind a factory with no return annotation ----------


class Gate:
    """Lets a test hold one call inside the client while another thread calls."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()


class Callee:
    """A callable client; ``proxy("block")`` stays inside the call until the gate opens."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    def __call__(self, x: Any) -> tuple[Callee, Any]:
        if x == "block":
            self.gate.entered.set()
            assert self.gate.release.wait(JOIN), "the test never released the call"
        return self, x

    def close(self) -> None:
        pass


class NotCallable:
    """A client that cannot be called."""

    def ping(self) -> str:
        return "pong"

    def close(self) -> None:
        pass


SYNC_POLICIES: dict[str, Any] = {
    "per_thread": safeclients.per_thread,
    "locked": lambda factory: safeclients.locked(factory, timeout=0),
    "pooled": lambda factory: safeclients.pooled(factory, size=1, timeout=0),
    "per_process": safeclients.per_process,
    "guarded": safeclients.guarded,
}

# What a call sees while another thread is inside a call of the client: proof that calling
# the proxy goes through the policy. None: it runs, on an instance of its own (per_thread) or
# on the shared one (per_process: a thread-safe client, no lock).
DURING_A_CALL: dict[str, type[BaseException] | None] = {
    "per_thread": None,
    "locked": safeclients.LockTimeout,
    "pooled": safeclients.PoolTimeout,
    "per_process": None,
    "guarded": safeclients.ConcurrentUseError,
}


@pytest.mark.parametrize("name", sorted(SYNC_POLICIES))
def test_a_callable_client_is_called_through_the_policy_without_an_annotation(
    name: str, call_path: str
) -> None:
    gate = Gate()
    # A lambda has no return annotation: the client type is unknown until the first instance.
    proxy = SYNC_POLICIES[name](lambda: Callee(gate))
    assert callable(proxy), "the client type is unknown, so it may be callable"
    mine, value = proxy("first")
    assert value == "first" and type(mine) is Callee
    assert safeclients.stats(proxy).created == 1 and callable(proxy)

    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(proxy("block")))
    thread.start()
    try:
        assert gate.entered.wait(JOIN), "the other thread's call never reached a client"
        expected = DURING_A_CALL[name]
        if expected is None:
            assert proxy("during") == (mine, "during")
        else:
            with pytest.raises(expected):
                proxy("during")
    finally:
        gate.release.set()
        thread.join(JOIN)
    assert not thread.is_alive() and len(results) == 1, "the other thread's call failed"
    theirs = results[0][0]
    assert (theirs is not mine) == (name == "per_thread"), f"{name}: the wrong instance was called"
    assert proxy("after") == (mine, "after"), "the instance was not given back after the call"


@pytest.mark.parametrize("name", sorted(SYNC_POLICIES))
def test_calling_a_client_that_is_not_callable_names_its_type(name: str, call_path: str) -> None:
    proxy = SYNC_POLICIES[name](lambda: NotCallable())
    assert callable(proxy), "the client type is unknown, so it may be callable"
    with pytest.raises(TypeError, match=r"tests\.lib\.test_dunders\.NotCallable, is not callable"):
        proxy()
    assert not callable(proxy), "once the client type is known, callable() gives its answer"
    with pytest.raises(TypeError, match=r"NotCallable\]' object is not callable"):
        proxy()
    # Nothing was taken and kept: a pool of one and a lock with timeout=0 are free.
    assert proxy.ping() == "pong"
    assert safeclients.stats(proxy).created == 1


@pytest.mark.parametrize("name", sorted(SYNC_POLICIES))
def test_callable_tells_the_known_client_type_without_creating_one(name: str) -> None:
    made: list[object] = []

    def not_callable() -> NotCallable:
        made.append(NotCallable())
        return NotCallable()

    def box() -> Box:
        made.append(Box())
        return Box()

    assert not callable(SYNC_POLICIES[name](not_callable))
    assert not callable(SYNC_POLICIES[name](NotCallable))
    assert callable(SYNC_POLICIES[name](box)) and callable(SYNC_POLICIES[name](Box))
    assert made == [], "callable() created a client"


def test_per_loop_awaits_a_callable_client_without_an_annotation() -> None:
    class AsyncCallee:
        async def __call__(self, x: int) -> int:
            await asyncio.sleep(0)
            return x + 1

        async def aclose(self) -> None:
            pass

    proxy = safeclients.per_loop(lambda: AsyncCallee())
    assert callable(proxy)

    async def main() -> list[int]:
        return [await proxy(1), await proxy(2)]

    assert asyncio.run(main()) == [2, 3]
    assert safeclients.stats(proxy).created == 1
    with pytest.raises(safeclients.NoRunningLoopError):
        proxy(3)

    plain = safeclients.per_loop(lambda: NotCallable())

    async def call_it() -> None:
        plain()

    with pytest.raises(TypeError, match="NotCallable, is not callable"):
        asyncio.run(call_it())
