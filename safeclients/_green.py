"""gevent awareness: locks that follow ``gevent.monkey``, and "is this request a greenlet?".

The trap
--------
Every policy makes its locks, conditions and thread-locals with ``threading.RLock()``,
``threading.Condition(threading.Lock())`` and ``threading.local()``, looked up at creation time.
After ``gevent.monkey.patch_all()`` those names give greenlet-aware objects, so a proxy made
*after* the patch is right as it is. A proxy made *before* the patch keeps OS-level ones: an OS
``RLock`` belongs to the one OS thread every greenlet runs on, so a second greenlet re-enters it
and two greenlets are inside one ``locked`` instance at once; an OS ``threading.local`` is shared
by every greenlet, so ``per_thread`` silently becomes the unsafe global. That happens wherever the
import precedes the patch: an app that imports safeclients first, gunicorn ``-k gevent
--preload`` (the app is imported in the master; each worker patches in its ``init_process``,
after the fork and after the at-fork hooks ran), uWSGI ``--gevent`` with
``--gevent-monkey-patch`` (the app is imported in the master; each worker patches when its loop
starts).

The fix, at no cost per call
----------------------------
gevent announces each patch through ``zope.event`` (``GeventDidPatchModuleEvent``; see
``gevent.events``). When gevent is installed, importing this module subscribes a handler; when
``threading`` has just been patched it first runs the fork check (so a worker forked from C
drops what it inherited, as on any first call), then asks every live policy of this process to
``green_reset()``: make its locks, conditions and thread-locals again, now greenlet-aware. The
per-call paths are untouched: nothing on them asks "patched yet?" (measured with
``python -m benchmarks --only micro``, see the README). A patch done by hand without gevent's
events (setting ``threading.RLock`` yourself) is not seen; everything gevent ships goes through
``gevent.monkey.patch_module``, which sends them.

Which process and thread run this: the subscription runs at import, wherever safeclients is
imported (often the master). The handler runs where ``patch_all()`` runs: a worker's main
thread, before it serves; no request is inside a policy then.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from typing import Any, Protocol

from safeclients import _codegen, _context, _fork


class GreenAware(Protocol):
    def green_reset(self) -> None:
        """Make locks, conditions and thread-locals again (``threading`` was just patched)."""


def threading_patched() -> bool:
    """Whether gevent has patched ``threading`` in this process (never imports gevent)."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None:
        return False
    return bool(monkey.is_module_patched("threading"))


def in_request_greenlet() -> bool:
    """Whether the caller runs in a spawned greenlet of a patched process (not the main one).

    That is where gevent servers run each request: uWSGI ``--gevent`` and gunicorn
    ``-k gevent`` spawn one greenlet per request (per connection for gunicorn).
    """
    if not threading_patched():
        return False
    greenlet = sys.modules.get("greenlet")
    if greenlet is None:
        return False
    current = greenlet.getcurrent()
    return current.parent is not None


def _policies() -> list[Any]:
    return [p for p in _fork.live_policies() if hasattr(p, "green_reset")]


def on_patch(event: object) -> None:
    """``zope.event`` subscriber: after ``threading`` is patched, renew every policy's locks."""
    if type(event).__name__ != "GeventDidPatchModuleEvent":
        return
    if getattr(event, "module_name", None) != "threading":
        return
    renew_all()


def renew_all() -> None:
    """Reset inherited policies (fork check), then make every policy's locks green."""
    _fork.check()
    _codegen.rebind_green()
    _name_greenlets()
    for policy in _policies():
        policy.green_reset()
    RENEWALS[0] += 1


#: How many times this process renewed its policies' locks after a patch (tests read it).
RENEWALS = [0]

# Guards _subscribed (two threads importing at once).
_subscribe_lock = threading.Lock()
_subscribed = [False]


def subscribe() -> bool:
    """Subscribe :func:`on_patch` to gevent's patch events, if gevent is installed. Idempotent."""
    with _subscribe_lock:
        if _subscribed[0]:
            return True
        if importlib.util.find_spec("gevent") is None:
            return False
        try:  # gevent's own dependency: present wherever gevent is
            event: Any = importlib.import_module("zope.event")
        except ImportError:
            return False
        event.subscribers.append(on_patch)
        _subscribed[0] = True
        return True


def _name_greenlets() -> None:
    """A context is the greenlet itself once ``threading`` is patched (``_context``)."""
    greenlet = sys.modules.get("greenlet")
    if greenlet is not None:
        _context.green(greenlet.getcurrent)


subscribe()
if threading_patched():  # imported after patch_all(): no patch event will come
    _name_greenlets()

__all__ = [
    "threading_patched",
    "in_request_greenlet",
    "on_patch",
    "renew_all",
    "subscribe",
    "RENEWALS",
]
