"""What the audit visits: the globals of the audited modules, and what they hold, bounded.

``walk(roots)`` yields ``(where, value)`` for the globals of the root modules and of every
module of the same top-level package they reach (as a module global, or as the home of a
function or class they imported), breadth first, each module once; and, CONTAINER_DEPTH
levels into each global, the items of dicts, lists, tuples, sets and the attributes of
instances of the app's own classes, at most CONTAINER_ITEMS per level. The bound is applied
before anything is formatted: a 3M-entry dict costs CONTAINER_ITEMS ``repr()`` calls, not 3M.
Keys are named with a bounded ``reprlib`` repr; a key whose ``repr`` raises is named by its
type (``<Key instance at 0x...>``).

The walker never asks a lazy object for anything: safeclients proxies are yielded, never
looked into, and ``type(value)`` is used rather than ``isinstance`` (a proxy or a
context-local computes its ``__class__``, which can create a client or raise).

Process and thread: runs wherever the audit runs. Across a fork: holds no state.
"""

from __future__ import annotations

import itertools
import reprlib
import sys
import types
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from safeclients.control import is_proxy

__all__ = ["CONTAINER_DEPTH", "CONTAINER_ITEMS", "walk"]

#: How deep the walk goes into what a global holds: containers (``CLIENTS = {"a": Client()}``)
#: and instances of the app's own classes (``service.client``); and how many items per level.
CONTAINER_DEPTH = 2
CONTAINER_ITEMS = 1000

# How often a container that another thread keeps changing is copied before it is skipped.
_COPY_ATTEMPTS = 3

_T = TypeVar("_T")

# Names dict keys in a finding's `where`; reprlib bounds long strings and nested containers
# and falls back to "<Type instance at 0x...>" when a key's __repr__ raises an Exception.
_key_repr = reprlib.Repr()
_key_repr.maxstring = 80
_key_repr.maxother = 80


def walk(roots: list[types.ModuleType]) -> Iterator[tuple[str, object]]:
    """Yield ``(where, value)`` for every global reached from ``roots`` (module docstring)."""
    queue = list(roots)
    seen = {m.__name__ for m in roots}
    while queue:
        module = queue.pop(0)
        package = module.__name__.partition(".")[0]
        for name, value in list(vars(module).items()):
            if name.startswith("__") and name.endswith("__"):
                continue
            if is_proxy(value):
                # Before any isinstance(): a proxy answers it with its client's class, which
                # would create the client.
                yield f"{module.__name__}.{name}", value
                continue
            home = _home_module(value)
            if home is not None:
                if home.__name__.partition(".")[0] == package and home.__name__ not in seen:
                    seen.add(home.__name__)
                    queue.append(home)
                if isinstance(value, types.ModuleType):
                    continue
            yield from _values(f"{module.__name__}.{name}", value, CONTAINER_DEPTH, package)


def _home_module(value: object) -> types.ModuleType | None:
    """The module a global comes from when it is a module, function or class.

    ``type(value)`` checks, not ``isinstance``: a lazy object (a proxy, a context-local)
    computes its ``__class__``, which can create a client or raise outside a request.
    """
    kind = type(value)
    if issubclass(kind, types.ModuleType) and isinstance(value, types.ModuleType):
        return value
    if issubclass(kind, (types.FunctionType, type)):
        return sys.modules.get(getattr(value, "__module__", "") or "")
    return None


def _values(where: str, value: object, depth: int, package: str) -> Iterator[tuple[str, object]]:
    yield where, value
    if depth > 0 and not is_proxy(value):
        for child_where, child in _children(where, value, package):
            yield from _values(child_where, child, depth - 1, package)


def _children(where: str, value: object, package: str) -> Iterable[tuple[str, object]]:
    """What a global holds: container items, and the attributes of an instance of a class
    defined in the app's own package (``service.client``). At most CONTAINER_ITEMS of them,
    cut before any is named or copied."""
    kind = type(value)
    if kind is dict and isinstance(value, dict):
        return [(f"{where}[{_key_repr.repr(key)}]", item) for key, item in _first(value.items)]
    if kind in (list, tuple) and isinstance(value, (list, tuple)):
        return [(f"{where}[{index}]", item) for index, item in enumerate(value[:CONTAINER_ITEMS])]
    if kind in (set, frozenset) and isinstance(value, (set, frozenset)):
        return [(f"{where}<set item>", item) for item in _first(value.__iter__)]
    if kind.__module__.partition(".")[0] == package:
        try:
            attributes = object.__getattribute__(value, "__dict__")
        except AttributeError:
            return []  # a class with __slots__ only
        return [(f"{where}.{name}", item) for name, item in _first(attributes.items)]
    return []


def _first(iterate: Callable[[], Iterable[_T]]) -> list[_T]:
    """The first CONTAINER_ITEMS of ``iterate()``, copied; retried when a thread the app
    started at import changes the container meanwhile (RuntimeError: "changed size during
    iteration"), and empty after _COPY_ATTEMPTS such failures."""
    for _ in range(_COPY_ATTEMPTS):
        try:
            return list(itertools.islice(iterate(), CONTAINER_ITEMS))
        except RuntimeError:
            continue
    return []
