"""Opt-in shim: make ``gearman3`` 0.2.1 read from its sockets on Python >= 3.9.

``gearman3`` (the package older docs name) appends every ``recv()`` to an ``array.array("b")``
with ``array.fromstring``, which Python 3.9 removed: its first socket read raises
``AttributeError: 'array.array' object has no attribute 'fromstring'``, before threads matter.
That is the only such call in 0.2.1 (``tostring`` is only used on Python 2). The maintained
fork, ``pygearman`` (also imported as ``gearman``; the ``gearman`` extra), needs nothing.

Call :func:`patch_gearman3` once, before the first job (e.g. at import time of your app)::

    from safeclients.contrib.gearman import patch_gearman3
    patch_gearman3()

What it does: it gives ``GearmanConnection`` an ``_incoming_buffer`` property that stores every
array it is handed as a small ``array.array`` subclass with ``fromstring`` (= ``frombytes``).
The class is patched only when its code actually calls ``fromstring`` (so it is a no-op on
``pygearman`` and on Pythons that still have it); a second call is a no-op too. It touches no
threads and no sockets; it fixes the Python version problem only: a gearman3 client is just as
thread-unsafe as any other, so still wrap the global with ``safeclients``.
"""

from __future__ import annotations

import array
import importlib
from typing import Any

__all__ = ["needs_patch", "patch_gearman3"]

_STORE = "_safeclients_incoming_buffer"


class _ByteArray(array.array):  # type: ignore[type-arg]
    """``array.array`` with the Python 2 era name ``fromstring`` gearman3 calls."""

    def fromstring(self, data: bytes) -> None:
        self.frombytes(data)


def _get(conn: Any) -> Any:
    return conn.__dict__[_STORE]


def _set(conn: Any, value: Any) -> None:
    if isinstance(value, array.array) and not isinstance(value, _ByteArray):
        value = _ByteArray(value.typecode, value)
    conn.__dict__[_STORE] = value


def _connection_class() -> Any:
    return importlib.import_module("gearman.connection").GearmanConnection


def needs_patch() -> bool:
    """Whether the installed ``gearman`` calls ``array.fromstring`` and this Python lacks it."""
    cls = _connection_class()
    if isinstance(cls.__dict__.get("_incoming_buffer"), property):
        return False  # patched already
    names = cls.read_data_from_socket.__code__.co_names
    return "fromstring" in names and not hasattr(array.array, "fromstring")


def patch_gearman3() -> bool:
    """Patch ``gearman.connection.GearmanConnection`` if needed; True if this call patched it."""
    if not needs_patch():
        return False
    cls = _connection_class()
    cls._incoming_buffer = property(_get, _set, doc="gearman3 read buffer (safeclients shim)")
    return True
