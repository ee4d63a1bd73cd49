"""Fork detection: which process are we in, cheaply, on every call.

Across a fork
-------------
A client instance created in one process must never be used in another: after a fork the parent
and the child share the client's socket, and their requests and replies interleave on it. Every
policy therefore asks, on every call, "has this process forked since I last looked?", and if so
*drops* every instance it inherited (without closing it: the parent still owns the socket, and a
protocol-level close such as memcached's ``quit`` would break the parent's connection) and
replaces its locks and thread-locals, which may have been copied in a held state.

The question must be answered even when the fork ran no Python at-fork hooks: uWSGI forks its
workers from C and, unless ``py-call-osafterfork`` is set, never runs ``os.register_at_fork``
callbacks. The usual answer is ``os.getpid() != saved_pid`` on every call, which costs a system
call (about 100-200 ns here). We do better:

* ``ARMED`` is one byte in an anonymous private ``mmap`` page marked
  ``madvise(MADV_WIPEONFORK)`` (Linux >= 4.14). The kernel hands every forked child a zeroed copy
  of that page, however the fork was made. The hot path reads ``ARMED[0]`` (about 20 ns, no system
  call); non-zero means "same process as when we last looked".
* Zero sends the caller to ``check()``: under a lock private to this process (a
  ``dict.setdefault(os.getpid(), Lock())`` gives each process a fresh lock atomically, so a lock
  copied in a held state can never block the child) every live policy resets itself, and only then
  is the byte re-armed, so no thread can see "armed" before the reset is complete.
* Where ``MADV_WIPEONFORK`` is unavailable, ``ARMED`` is an object whose ``[0]`` compares
  ``os.getpid()`` with the pid recorded at the last re-arm: slower, equally correct.
* ``os.register_at_fork(after_in_child=check)`` resets eagerly where hooks do run (``os.fork()``,
  gunicorn, multiprocessing's fork start method).

Inherited instances are kept, never finalized
---------------------------------------------
Dropping an inherited instance is not enough: when the child's last reference goes, the
client's own finalizer runs, and some write to the shared socket. mysqlclient's dealloc calls
``mysql_close()``, which sends ``COM_QUIT`` (the parent's next query gets ``OperationalError
2013``); libpq's ``PQfinish`` (psycopg2's dealloc) sends a Terminate message; others shut the
socket down. So the child keeps every inherited instance reachable for the rest of its life
(``keep``: the classic module-level list, ``INHERITED``) and, because interpreter exit clears
module globals and would finalize them then, also takes one reference that is never given back
(CPython's ``Py_IncRef``): they are never closed, finalized or written to in the child. Their
file descriptors close with the process, which sends nothing. The cost is their memory,
copy-on-write pages shared with the parent, once per fork.

Which process runs what: ``register`` runs wherever a proxy is created (often the master, before
the fork); ``check`` runs in the child, in the first thread to use any proxy (or in the at-fork
hook), and ``keep`` there.
"""

from __future__ import annotations

import mmap
import os
import sys
import threading
import weakref
from collections.abc import Iterable
from typing import Any, Protocol

# Linux's value; Python < 3.12's mmap module does not export the name.
_MADV_WIPEONFORK = getattr(mmap, "MADV_WIPEONFORK", 18)


class ForkAware(Protocol):
    """What the registry needs from a policy."""

    def after_fork(self) -> None:
        """Drop inherited instances (without closing them) and replace locks; child process."""


class _PidByte:
    """Fallback for ``ARMED`` where the kernel cannot wipe a page on fork: a pid comparison."""

    __slots__ = ("_pid",)

    def __init__(self) -> None:
        self._pid = os.getpid()

    def __getitem__(self, index: int) -> int:
        return 1 if os.getpid() == self._pid else 0

    def __setitem__(self, index: int, value: int) -> None:
        self._pid = os.getpid() if value else -1


class _Byte(Protocol):
    def __getitem__(self, index: int) -> int: ...

    def __setitem__(self, index: int, value: int) -> None: ...


def _make_armed_byte() -> tuple[_Byte, bool]:
    """Return the ``ARMED`` object and whether it is the kernel-wiped page."""
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        page.madvise(_MADV_WIPEONFORK)
    except (OSError, AttributeError, ValueError):
        return _PidByte(), False
    page[0] = 1
    return page, True


ARMED, WIPEONFORK = _make_armed_byte()

# Guards nothing across processes on purpose: each process gets its own lock, created on first
# need, so a lock copied in a held state by a fork is never waited for. Entries are keyed by pid.
_reset_locks: dict[int, threading.Lock] = {}

# Every live policy -> the pid of the process whose state it holds. A policy created in a fork
# child before that child's first check holds nothing inherited: it must not be reset.
_registry: weakref.WeakKeyDictionary[ForkAware, int] = weakref.WeakKeyDictionary()

#: How many fork resets this process has seen (its own and its ancestors'). A block that holds
#: an instance (``checkout()``, ``with proxy:``) records it, and gives nothing back when it ends
#: in a different generation: the child dropped that instance, and its lock, at the reset.
GENERATION = [0]


#: The instances this process inherited from its parent (see the module): kept, never used.
INHERITED: list[Any] = []


def keep(instances: Iterable[Any]) -> None:
    """Fork child: keep ``instances`` (the parent's) alive until the process ends, past the
    interpreter's exit, so that no finalizer of theirs runs here (see the module)."""
    for obj in instances:
        if obj is None:
            continue
        INHERITED.append(obj)
        _leak_a_reference(obj)


def _leak_a_reference(obj: object) -> None:
    """One reference to ``obj`` that is never released (CPython): exit's module teardown, which
    empties ``INHERITED``, then leaves it alone. Elsewhere the list alone keeps it."""
    if sys.implementation.name != "cpython":
        return
    import ctypes  # here: only a fork child that inherited instances needs it

    ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))


def register(policy: ForkAware) -> None:
    """Make ``policy`` reset itself in any child process (called when a proxy is created)."""
    _registry[policy] = os.getpid()


def live_policies() -> list[ForkAware]:
    """A snapshot of the registered policies (used by the shutdown hook)."""
    return list(_registry.keys())


def check() -> None:
    """Reset every policy if this process is a fork child that has not reset yet.

    Slow path of every proxy call; cheap and idempotent when nothing forked.
    """
    if ARMED[0]:
        return
    pid = os.getpid()
    reset_lock = _reset_locks.setdefault(pid, threading.Lock())
    with reset_lock:
        if ARMED[0]:
            return
        for stale in [other for other in _reset_locks if other != pid]:
            _reset_locks.pop(stale, None)
        for policy, owner in list(_registry.items()):
            if owner != pid:
                policy.after_fork()
                _registry[policy] = pid
        GENERATION[0] += 1
        ARMED[0] = 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=check)
