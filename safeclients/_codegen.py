"""Compiling generated functions: the one place ``exec`` runs, and the names they see.

Forwarders (``_use`` for proxies, ``_escape`` for derived objects) are generated once, when a
proxy class or a derived type is first seen, from templates a reader can find. Their source is
registered with ``linecache`` so a traceback shows the generated lines.

Every generated function shares one globals dict per compilation, made from ``SHARED`` plus the
caller's names. ``rebind_green()`` replaces ``get_ident`` in every such dict once gevent has
patched ``threading`` (``_green`` calls it): a thread ident taken before the patch is the one OS
thread every greenlet runs on, and would let every greenlet in as "the same thread".

Which thread runs what: compilation runs in whichever thread first needs a function (a class or
dict store is atomic under the GIL); ``rebind_green`` where ``patch_all()`` runs.
"""

from __future__ import annotations

import linecache
import threading
from collections.abc import Callable
from typing import Any

# Names every generated function may use (see rebind_green for why get_ident is late-bound).
SHARED: dict[str, Any] = {"get_ident": threading.get_ident}

_serial = [0]
# Every globals dict handed out, so a gevent patch can rebind get_ident in all of them. Plain
# dicts, held strongly: CPython caches global lookups only for an exact dict (a subclass, which
# a weak reference would need, makes every generated call slower), and there are few of them
# (one per policy kind, use variant and check mode, one for the derived forwarders).
_scopes: list[dict[str, Any]] = []


def scope(names: dict[str, Any]) -> dict[str, Any]:
    """A globals dict for generated functions: ``SHARED`` and ``names``."""
    made = dict(SHARED)
    made.update(names)
    _scopes.append(made)
    return made


def build(source: str, label: str, globals_: dict[str, Any]) -> Callable[..., Any]:
    """Compile ``source`` (which defines ``_make``) in ``globals_`` and return ``_make``."""
    _serial[0] += 1
    filename = f"<safeclients {label} #{_serial[0]}>"
    code = compile(source, filename, "exec")
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(code, globals_)
    make: Callable[..., Any] = globals_.pop("_make")
    return make


def rebind_green() -> None:
    """gevent patched ``threading``: generated code now asks for the greenlet's ident."""
    SHARED["get_ident"] = threading.get_ident
    for found in _scopes:
        found["get_ident"] = threading.get_ident


__all__ = ["SHARED", "build", "scope", "rebind_green"]
