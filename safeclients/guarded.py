"""``guarded``: a detector. No locking; it watches for two threads inside one client at once.

Every call marks "thread T is inside method m" in ``inside`` (a dict keyed by thread ident; each
thread writes only its own key, and a dict store or delete is atomic under the GIL) and then
looks at the dict's size. A second thread arriving while the first is still inside sees two
entries: with ``on_conflict="raise"`` it gets ``ConcurrentUseError`` *before* touching the
client, with a message naming both threads, the method each is in, and the other thread's
current stack (``sys._current_frames()``), so both sides of the race are on screen.
``"warn"`` logs the same message (logger ``safeclients``) and proceeds; ``"count"`` only counts.
``stats(proxy).conflicts`` counts every conflict seen.

Across a fork: like every policy, the child drops the instance it inherited (without closing it)
and, given a factory, creates its own on first use, so an app whose client was used once at
import (a warm-up, a schema check) runs under the detector in every worker. Only an instance
given without a factory cannot be recreated: its first use in the child raises
``ForkedUseError`` (the parent's connection would be shared). ``dispose(proxy)`` in the child
forgets it (without closing it).

Dispose: an instance disposed while a thread is inside a call on it is closed by the last thread
to leave, never under a running call.
"""

from __future__ import annotations

import functools
import gc
import os
import sys
import threading
import traceback
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar, overload

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


def _thread_name(ident: int) -> str:
    for thread in threading.enumerate():
        if thread.ident == ident:
            return thread.name
    return "?"


def _use(client: str, name: str | None) -> str:
    """How a use reads in the message: ``Client.method()``, or a generic use of the client."""
    if name is None:
        return f"{client} ({_GENERIC_USE})"
    return f"{client}.{name}()"


def _format_stack(frame: FrameType | None) -> str:
    """The other thread keeps running: take its frames and line numbers first, sources after."""
    if frame is None:
        return "  (the thread has left)\n"
    summary = traceback.StackSummary.extract(traceback.walk_stack(frame), lookup_lines=False)
    summary.reverse()
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
    # thread ident the use registered in `inside`, or None for a nested use from a callback.
    USE = Use(
        get="""
            obj = policy.instance
            if obj is None:
                obj = policy.create_instance()
            token = get_ident()
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
            # Thread ident -> name of the (outermost) method that thread is inside right now.
            self.inside: dict[int, str | None] = {}
            # Instances disposed while a thread was inside a call: closed by the last one out.
            self.retiring: list[T] = []

    # -- detection -----------------------------------------------------------------------------

    def conflict(self, me: int, name: str | None) -> None:
        """Slow path: another thread is inside the client too. Raise, warn or count."""
        others = [(ident, other) for ident, other in list(self.inside.items()) if ident != me]
        if not others:
            return
        self.counters.conflict()
        if self.on_conflict == "count":
            return
        if self.on_conflict == "raise":
            # This thread will not touch the client: leave `inside` before the (slow) message is
            # built, so threads arriving meanwhile are not reported as racing with it.
            self.inside.pop(me, None)
        client = type(self.instance).__name__
        frames = _current_frames()
        parts = [
            f"thread {_thread_name(me)!r} (ident {me}) called {_use(client, name)} while "
            f"thread {_thread_name(ident)!r} (ident {ident}) was still inside "
            f"{_use(client, other)}"
            for ident, other in others
        ]
        message = "; ".join(parts) + (
            ": one client instance used by two threads at once (it is not thread-safe; wrap it "
            "with safeclients.per_thread, locked or pooled)."
        )
        for ident, _ in others:
            message += f"\nStack of thread {_thread_name(ident)!r} at that moment:\n"
            message += _format_stack(frames.get(ident))
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
