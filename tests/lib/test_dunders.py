"""Special methods go to the right instance, in both wrapt modes.

wrapt's C proxy reads its one stored target directly for str(), operators and ``with``; a
per-thread proxy must route each of them to the calling thread's instance. scripts/test.sh runs
this file with the C extension and with WRAPT_DISABLE_EXTENSIONS=1.
"""

from __future__ import annotations

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
