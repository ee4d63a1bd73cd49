"""``guarded``: a detector. No locking; it watches for two threads inside one client at once.

Every call marks "thread T is inside method m" in ``inside`` (a dict keyed by thread ident; each
thread writes only its own key, and a dict store or delete is atomic under the GIL) and then
looks at the dict's size. A second thread arriving while the first is still inside sees two
entries: with ``on_conflict="raise"`` it gets ``ConcurrentUseError`` *before* touching the
client, with a message naming both threads, the method each is in, and the other thread's
current stack (``sys._current_frames()``), so both sides of the race are on screen.
``"warn"`` logs the same message (logger ``safeclients``) and proceeds; ``"count"`` only counts.
``stats(proxy).conflicts`` counts every conflict seen.

Across a fork: an instance created in the parent is not reused in the child; the first use there
raises ``ForkedUseError`` (the bug this detector exists to catch: a client created at import time,
before the server forked). ``dispose(proxy)`` in the child forgets it (without closing it), after
which a factory creates a fresh one. An instance first created in the child is fine.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar, overload

from safeclients import _fork
from safeclients._fork import ARMED
from safeclients._policy import Policy, log
from safeclients._proxy import make_proxy
from safeclients.errors import ConcurrentUseError, ForkedUseError
from safeclients.locked import is_factory

T = TypeVar("T")

ON_CONFLICT = ("raise", "warn", "count")

_GENERIC_USE = "a special method or checkout block"

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _thread_name(ident: int) -> str:
    for thread in threading.enumerate():
        if thread.ident == ident:
            return thread.name
    return "?"


def _use(client: str, name: str) -> str:
    """How a use reads in the message: ``Client.method()``, or a generic use of the client."""
    if name == _GENERIC_USE:
        return f"{client} ({name})"
    return f"{client}.{name}()"


def _format_stack(frame: FrameType | None) -> str:
    """The other thread keeps running: take its frames and line numbers first, read sources after."""
    if frame is None:
        return "  (the thread has left)\n"
    summary = traceback.StackSummary.extract(traceback.walk_stack(frame), lookup_lines=False)
    summary.reverse()
    # Our own frames between the caller and the client only hide the two sides of the race.
    ours = [f for f in summary if not f.filename.startswith(_PACKAGE_DIR)]
    return "".join(traceback.StackSummary.from_list(ours).format())


class GuardedPolicy(Policy[T]):
    kind = "guarded"

    def __init__(
        self,
        obj_or_factory: T | Callable[[], T],
        *,
        on_conflict: str = "raise",
        close: Callable[[T], object] | None = None,
    ) -> None:
        if on_conflict not in ON_CONFLICT:
            raise ValueError(f"on_conflict must be one of {ON_CONFLICT}, got {on_conflict!r}")
        factory: Callable[[], T] | None = None
        instance: T | None = None
        if is_factory(obj_or_factory):
            factory = obj_or_factory  # type: ignore[assignment]
        else:
            instance = obj_or_factory  # type: ignore[assignment]
        super().__init__(factory, close=close, discard_on=())
        # The detector is its own check; SAFECLIENTS_CHECK's tracker would report its conflicts.
        self.tracker = None
        self.on_conflict = on_conflict
        self.instance: T | None = instance
        if instance is not None:
            self.client_type = type(instance)
        self._reset()

    def _reset(self) -> None:
        # Guards the creation of `instance` only; calls themselves are never serialized.
        self._create_lock = threading.Lock()
        # Thread ident -> name of the (outermost) method that thread is inside right now.
        self.inside: dict[int, str] = {}
        # Per thread: whether each generic-path acquire registered in `inside` (innermost last).
        self._registered = threading.local()
        # Pid of a parent process whose instance was inherited and must not be used here.
        self._foreign_pid: int | None = None
        self._creator_pid = os.getpid()

    # -- detection -----------------------------------------------------------------------------

    def conflict(self, me: int, name: str) -> None:
        """Slow path: another thread is inside the client too. Raise, warn or count."""
        others = [(ident, other) for ident, other in list(self.inside.items()) if ident != me]
        if not others:
            return
        self.count_conflict()
        if self.on_conflict == "count":
            return
        if self.on_conflict == "raise":
            # This thread will not touch the client: leave `inside` before the (slow) message is
            # built, so threads arriving meanwhile are not reported as racing with it.
            self.inside.pop(me, None)
        client = type(self.instance).__name__
        frames = sys._current_frames()
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
        if self.on_conflict == "warn":
            log.warning("safeclients: %s", message)
            return
        raise ConcurrentUseError(message)

    def create_guarded(self) -> T:
        """Slow path: first use in this process (or after dispose)."""
        with self._create_lock:
            obj = self.instance
            if obj is not None:
                return obj
            if self._foreign_pid is not None:
                raise ForkedUseError(
                    f"this {self.client_type.__name__ if self.client_type else 'client'} was "
                    f"created in process {self._foreign_pid} and is used in process "
                    f"{os.getpid()}, a fork of it: both processes now share its connection. "
                    f"Create the client after the fork (a factory first used in the worker), "
                    f"or wrap it with safeclients.per_thread, locked or pooled"
                )
            obj = self.create()
            self._creator_pid = os.getpid()
            self.instance = obj
            return obj

    # -- override surface ----------------------------------------------------------------------

    def acquire(self) -> T:
        obj = self.instance
        if obj is None:
            obj = self.create_guarded()
        me = threading.get_ident()
        registered = me not in self.inside
        stack: list[bool] | None = getattr(self._registered, "stack", None)
        if stack is None:
            stack = self._registered.stack = []
        if registered:
            self.inside[me] = _GENERIC_USE
            if len(self.inside) > 1:
                try:
                    self.conflict(me, _GENERIC_USE)
                except BaseException:
                    self.inside.pop(me, None)
                    raise
        stack.append(registered)
        return obj

    def release(self, obj: T, broken: bool) -> None:
        if self._registered.stack.pop():
            self.inside.pop(threading.get_ident(), None)

    def peek(self) -> T:
        if not ARMED[0]:
            _fork.check()
        obj = self.instance
        return obj if obj is not None else self.create_guarded()

    def live(self) -> int:
        return 0 if self.instance is None else 1

    def dispose(self, final: bool) -> None:
        with self._create_lock:
            if final:
                self._final = True
            self._foreign_pid = None
            obj, self.instance = self.instance, None
        if obj is None:
            return
        if self._factory is None and not final:
            self.instance = obj
            return
        self.close_instance(obj, discarded=False)

    def after_fork(self) -> None:
        inherited = self.instance is not None
        creator = self._creator_pid
        self.instance = None
        self._reset()
        self._reset_common()
        if inherited:
            self._foreign_pid = creator

    def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """One call of ``name``, watched: the slow path and every forwarder come here."""
        if not ARMED[0]:
            _fork.check()
        obj = self.instance
        if obj is None:
            obj = self.create_guarded()
        me = threading.get_ident()
        inside = self.inside
        if me in inside:  # a nested call from inside the client (a callback): same thread
            return getattr(obj, name)(*args, **kwargs)
        inside[me] = name
        try:
            if len(inside) > 1:
                self.conflict(me, name)
            return getattr(obj, name)(*args, **kwargs)
        finally:
            inside.pop(me, None)

    def forwarder(self, name: str) -> object:
        call = self.call

        def forward(proxy: object, *args: Any, **kwargs: Any) -> Any:
            return call(name, args, kwargs)

        forward.__name__ = forward.__qualname__ = name
        return forward


@overload
def guarded(
    obj_or_factory: type[T], *, on_conflict: str = ..., close: Callable[[T], object] | None = ...
) -> T: ...


@overload
def guarded(
    obj_or_factory: Callable[[], T],
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
    obj_or_factory: Any = None,
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

        def decorate(factory: Callable[[], Any]) -> Any:
            return guarded(factory, on_conflict=on_conflict, close=close)

        return decorate
    policy: GuardedPolicy[Any] = GuardedPolicy(obj_or_factory, on_conflict=on_conflict, close=close)
    return make_proxy(policy, "guarded")
