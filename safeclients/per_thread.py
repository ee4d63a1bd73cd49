"""``per_thread``: each thread lazily gets its own instance; it is closed when the thread ends.

Thread exit: next to its instance, each thread's ``threading.local`` entry holds a small
``_ThreadSlot``. The policy keeps ``weakref.ref(slot, callback) -> instance``. When the thread
ends, CPython clears its thread-local entries, the slot dies, and the callback (running in the
exiting thread) removes the record and closes the instance: no wait for the proxy to be garbage
collected, and no record left per dead thread, however many threads come and go.

Across a fork: ``after_fork`` swaps in a fresh ``threading.local``, record table and locks, and
closes nothing. Callbacks of inherited slots (``os.fork()`` clears the other threads' locals in
the child) find no record in the new table, and close only instances created in their own process
in any case, so the child never closes the parent's connections.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar, overload

from safeclients import _fork
from safeclients._fork import ARMED
from safeclients._policy import DiscardOn, Policy
from safeclients._proxy import make_proxy

T = TypeVar("T")


class _ThreadSlot:
    """Dies with its thread's locals; its weakref callback closes the thread's instance."""

    __slots__ = ("__weakref__",)


class _SlotRef(weakref.ref[_ThreadSlot]):
    """A weakref to a thread's slot that remembers which process made it.

    ``os.fork()`` clears the other threads' locals in the child *before* any at-fork hook runs,
    so callbacks of inherited slots fire there first; they must neither close the parent's
    instance nor take a lock that a vanished thread may hold.
    """

    __slots__ = ("pid",)
    pid: int


class PerThreadPolicy(Policy[T]):
    kind = "per_thread"

    def __init__(
        self,
        factory: Callable[[], T],
        *,
        close: Callable[[T], object] | None = None,
        discard_on: DiscardOn | None = None,
    ) -> None:
        super().__init__(factory, close=close, discard_on=discard_on)
        self._reset()

    def _reset(self) -> None:
        # Order matters in a fork child: dropping the old local (last) fires the callbacks of its
        # slots, which must find the new lock and the new (empty) table.
        # Guards _records. Re-entrant: dropping a local inside the lock can run a callback that
        # takes it again in the same thread.
        self._records_lock = threading.RLock()
        # weakref to a live thread's slot -> that thread's instance.
        self._records: dict[_SlotRef, T] = {}
        # Per thread: `obj` (the instance) and `slot` (its _ThreadSlot).
        self._local = threading.local()

    def _thread_ended(self, ref: _SlotRef) -> None:
        """Weakref callback, in the exiting thread (or wherever the local is freed)."""
        if ref.pid != os.getpid():
            return
        with self._records_lock:
            obj = self._records.pop(ref, None)
        if obj is not None:
            self.close_instance(obj, discarded=False)

    def create_for_thread(self) -> T:
        """Slow path: the calling thread's first use (or first after dispose or discard)."""
        obj = self.create()
        slot = _ThreadSlot()
        ref = _SlotRef(slot, self._thread_ended)
        ref.pid = os.getpid()
        with self._records_lock:
            self._records[ref] = obj
        local = self._local
        local.obj = obj
        local.slot = slot
        return obj

    def discard(self, obj: T) -> None:
        """The calling thread's instance raised one of discard_on: close it, forget it."""
        local = self._local
        if getattr(local, "obj", None) is not obj:
            return
        slot = local.slot
        del local.obj, local.slot
        with self._records_lock:
            record = self._records.pop(weakref.ref(slot), None)  # type: ignore[call-overload]
        del slot
        if record is not None:
            self.close_instance(record, discarded=True)

    def acquire(self) -> T:
        try:
            obj: T = self._local.obj
        except AttributeError:
            obj = self.create_for_thread()
        return obj

    def release(self, obj: T, broken: bool) -> None:
        if broken:
            self.discard(obj)

    def peek(self) -> T:
        if not ARMED[0]:
            _fork.check()
        return self.acquire()

    def live(self) -> int:
        with self._records_lock:
            return len(self._records)

    def dispose(self, final: bool) -> None:
        if final:
            self._final = True
        with self._records_lock:
            records, self._records = self._records, {}
        # Outside the lock: dropping the old local runs its slots' callbacks (no-ops now).
        self._local = threading.local()
        pid = os.getpid()
        for ref, obj in list(records.items()):
            if ref.pid == pid:
                self.close_instance(obj, discarded=False)
        records.clear()

    def after_fork(self) -> None:
        self._reset()
        self._reset_common()

    def forwarder(self, name: str) -> object:
        policy = self
        is_broken = self.is_broken

        def forward(proxy: object, *args: Any, **kwargs: Any) -> Any:
            if not ARMED[0]:
                _fork.check()
            try:
                obj = policy._local.obj
            except AttributeError:
                obj = policy.create_for_thread()
            try:
                return getattr(obj, name)(*args, **kwargs)
            except BaseException as exc:
                if is_broken(exc):
                    policy.discard(obj)
                raise

        forward.__name__ = forward.__qualname__ = name
        return forward


@overload
def per_thread(
    factory: Callable[[], T],
    *,
    close: Callable[[T], object] | None = ...,
    discard_on: DiscardOn | None = ...,
) -> T: ...


@overload
def per_thread(
    factory: None = ..., *, close: None = ..., discard_on: DiscardOn | None = ...
) -> Callable[[Callable[[], T]], T]: ...


@overload
def per_thread(
    factory: None = ..., *, close: Callable[[Any], object], discard_on: DiscardOn | None = ...
) -> Callable[[Callable[[], T]], T]: ...


def per_thread(
    factory: Callable[[], T] | None = None,
    *,
    close: Callable[[T], object] | None = None,
    discard_on: DiscardOn | None = None,
) -> T | Callable[[Callable[[], T]], T]:
    """A proxy that gives each thread its own instance from ``factory``, created on first use.

    Bare decorator (``@per_thread``), with arguments (``@per_thread(close=...)``) or a call
    (``client = per_thread(make_client)``). When a thread ends, its instance is closed with
    ``close(obj)`` if given, else ``obj.close()`` if it has one. A call that raises one of
    ``discard_on`` (default: OSError or a ConnectionError-like class) closes the calling thread's
    instance; its next call creates a fresh one.
    """
    if factory is None:

        def decorate(factory: Callable[[], T]) -> T:
            return per_thread(factory, close=close, discard_on=discard_on)

        return decorate
    policy = PerThreadPolicy(factory, close=close, discard_on=discard_on)
    proxy: T = make_proxy(policy, "per_thread")  # type: ignore[assignment]
    return proxy
