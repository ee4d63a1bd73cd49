"""``guarded``: a detector. No locking; it watches for two contexts inside one client at once.

A context is an asyncio task, else a thread or greenlet (``_context.current``, looked up at each
call, so after gevent's patch two greenlets of one OS thread are two contexts, and two tasks of
one loop are two as well). Every call marks "context C is inside method m" in ``inside`` (a dict
keyed by context; each context writes only its own key, and a dict store or delete is atomic
under the GIL) and then looks at the dict's size. A use that outlives its call (a held
awaitable, a cursor) stays inside until it ends, wherever it ends: it leaves by the key it
entered with. A second context arriving while the first is still inside sees two entries: with
``on_conflict="raise"`` it gets ``ConcurrentUseError`` *before* touching the client, with a
message naming both contexts, the method each is in, and the other one's current stack (a
thread's from ``sys._current_frames()``, a task's from ``Task.get_stack()``), so both sides of
the race are on screen. ``"warn"`` logs the same message (logger ``safeclients``) and proceeds;
``"count"`` only counts. ``stats(proxy).conflicts`` counts every conflict seen.

Across a fork: like every policy, the child drops the instance it inherited (without closing it)
and, given a factory, creates its own on first use, so an app whose client was used once at
import (a warm-up, a schema check) runs under the detector in every worker. Only an instance
given without a factory cannot be recreated: its first use in the child raises
``ForkedUseError`` (the parent's connection would be shared). ``dispose(proxy)`` in the child
forgets it (without closing it).

Dispose: an instance disposed while a context is inside a call on it is closed by the last one
to leave, never under a running call.
"""

from __future__ import annotations

import functools
import gc
import os
import sys
import traceback
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar, overload

from safeclients import _context
from safeclients._factory import NOT_GIVEN, FunctionFactory, instance_or_factory, proxy_or_decorator
from safeclients._policy import log
from safeclients._proxy import make_proxy
from safeclients._single import SingleInstancePolicy
from safeclients._use import Use
from safeclients.errors import ConcurrentUseError, FactoryError

T = TypeVar("T")

ON_CONFLICT = ("raise", "warn", "count")

_GENERIC_USE = "a special method or checkout block"

# CPython 3.11 (and older) can deadlock when sys._current_frames() triggers a garbage collection
# that frees a threading.local (fixed in later versions): no collection during that call there.
_GC_HAZARD = sys.version_info < (3, 12)


def _current_frames() -> dict[int, FrameType]:
    if not _GC_HAZARD or not gc.isenabled():
        return sys._current_frames()
    gc.disable()
    try:
        return sys._current_frames()
    finally:
        gc.enable()


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _use(client: str, name: str | None) -> str:
    """How a use reads in the message: ``Client.method()``, or a generic use of the client."""
    if name is None:
        return f"{client} ({_GENERIC_USE})"
    return f"{client}.{name}()"


def _format_stack(found: list[FrameType]) -> str:
    """The other context keeps running: take its frames and line numbers first, sources after."""
    if not found:
        return "  (it has left, or it is a greenlet not running now)\n"
    summary = traceback.StackSummary.extract(((f, f.f_lineno) for f in found), lookup_lines=False)
    # Our own frames between the caller and the client only hide the two sides of the race.
    ours = [f for f in summary if not f.filename.startswith(_PACKAGE_DIR)]
    return "".join(traceback.StackSummary.from_list(ours).format())


# The end of a use: leave `inside`; the last thread out closes an instance disposed meanwhile.
_LEAVE = """
    if token is not None:
        policy.inside.pop(token, None)
        if policy.retiring:
            policy.finish_retire()
"""


class GuardedPolicy(SingleInstancePolicy[T]):
    kind = "guarded"

    # `name` is the method of the use (None for special methods and blocks). `token` is the
    # context the use registered in `inside`, or None for a nested use (a callback, a second
    # call while a held awaitable of the same context is open).
    USE = Use(
        get="""
            obj = policy.instance
            if obj is None:
                obj = policy.create_instance()
            token = current_context()
            inside = policy.inside
            if token in inside:
                token = None
            else:
                inside[token] = name
                if len(inside) > 1:
                    policy.conflict(token, name)
        """,
        put_ok=_LEAVE,
        put_broken=_LEAVE,  # a detector discards nothing: leaving is the same either way
    )

    def __init__(
        self,
        obj_or_factory: T | Callable[[], T],
        *,
        on_conflict: str = "raise",
        close: Callable[[T], object] | None = None,
    ) -> None:
        if on_conflict not in ON_CONFLICT:
            raise ValueError(f"on_conflict must be one of {ON_CONFLICT}, got {on_conflict!r}")
        self.on_conflict = on_conflict
        factory, instance = instance_or_factory(obj_or_factory)
        # The detector is its own check: SAFECLIENTS_CHECK's tracker would report its conflicts.
        super().__init__(factory, instance=instance, close=close, discard_on=(), checkable=False)

    def renew(self, *, drop: bool) -> None:
        # _create_lock (the base's) also guards `retiring`; calls are never serialized.
        super().renew(drop=drop)
        if drop:
            # Context -> name of the (outermost) method that context is inside right now.
            self.inside: dict[_context.Context, str | None] = {}
            # Instances disposed while a context was inside a call: closed by the last one out.
            self.retiring: list[T] = []

    # -- detection -----------------------------------------------------------------------------

    def conflict(self, me: _context.Context, name: str | None) -> None:
        """Slow path: another context is inside the client too. Raise, warn or count."""
        others = [(who, other) for who, other in list(self.inside.items()) if who != me]
        if not others:
            return
        self.counters.conflict()
        if self.on_conflict == "count":
            return
        if self.on_conflict == "raise":
            # This context will not touch the client: leave `inside` before the (slow) message
            # is built, so contexts arriving meanwhile are not reported as racing with it.
            self.inside.pop(me, None)
        client = type(self.instance).__name__
        frames = _current_frames()
        parts = [
            f"{_context.describe(me)} called {_use(client, name)} while "
            f"{_context.describe(who)} was still inside {_use(client, other)}"
            for who, other in others
        ]
        message = "; ".join(parts) + (
            ": one client instance used by two threads, greenlets or tasks at once (it is not "
            "safe for that; wrap it with safeclients.per_thread, locked or pooled, or per_loop "
            "for an async client)."
        )
        for who, _ in others:
            message += f"\nStack of {_context.describe(who)} at that moment:\n"
            message += _format_stack(_context.stack(who, frames))
        del frames
        if self.on_conflict == "warn":
            log.warning("safeclients: %s", message)
            return
        raise ConcurrentUseError(message)

    def finish_retire(self) -> None:
        """The last thread left a call on an instance disposed meanwhile: close it now."""
        with self._create_lock:
            if self.inside:
                return
            retiring, self.retiring = self.retiring, []
        for obj in retiring:
            self.close_instance(obj, discarded=False)

    # -- override surface ----------------------------------------------------------------------

    def live(self) -> int:
        return super().live() + len(self.retiring)

    def dispose(self, final: bool) -> None:
        """Close the instance; if a thread is inside a call on it, the last one out closes it."""
        obj = self.take_instance(final)
        if obj is None:
            return
        with self._create_lock:
            if self.inside:
                self.retiring.append(obj)
                return
        self.close_instance(obj, discarded=False)


@overload
def guarded(
    obj_or_factory: type[T], *, on_conflict: str = ..., close: Callable[[T], object] | None = ...
) -> T: ...


# A function or a partial is a factory; a callable *instance* falls through to the last
# overload, typed as itself (see FunctionFactory), as it is used at run time.
@overload
def guarded(
    obj_or_factory: FunctionFactory[T] | functools.partial[T],
    *,
    on_conflict: str = ...,
    close: Callable[[T], object] | None = ...,
) -> T: ...


@overload
def guarded(
    obj_or_factory: None = ..., *, on_conflict: str = ..., close: None = ...
) -> Callable[[Callable[[], T]], T]: ...


@overload
def guarded(
    obj_or_factory: None = ..., *, on_conflict: str = ..., close: Callable[[Any], object]
) -> Callable[[Callable[[], T]], T]: ...


@overload
def guarded(
    obj_or_factory: T, *, on_conflict: str = ..., close: Callable[[T], object] | None = ...
) -> T: ...


def guarded(
    obj_or_factory: Any = NOT_GIVEN,
    *,
    on_conflict: str = "raise",
    close: Callable[[Any], object] | None = None,
) -> Any:
    """A detector proxy: no locking; overlapping use by two threads is raised, warned or counted.

    Takes a factory (function, method, partial or class) or an existing instance, like
    ``locked``. ``on_conflict``: ``"raise"`` (``ConcurrentUseError`` in the second thread),
    ``"warn"`` (log a warning and proceed) or ``"count"`` (only ``stats().conflicts``).
    """
    if on_conflict not in ON_CONFLICT:
        raise ValueError(f"on_conflict must be one of {ON_CONFLICT}, got {on_conflict!r}")
    if obj_or_factory is None:
        raise FactoryError(
            "guarded(None): pass a client or a factory, or use @safeclients.guarded "
            "(or @safeclients.guarded(...)) as a decorator"
        )

    def make(obj_or_factory: Any) -> Any:
        return make_proxy(GuardedPolicy(obj_or_factory, on_conflict=on_conflict, close=close))

    return proxy_or_decorator(None if obj_or_factory is NOT_GIVEN else obj_or_factory, make)
