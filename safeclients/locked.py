"""``locked``: one instance per process; every call on it runs under a re-entrant lock.

The lock is held for the whole call (and for a whole ``checkout`` block), so calls from
different threads are serialized on the one instance. Waiting for the lock is counted in
``stats()`` (``waits``, ``wait_seconds``).

Across a fork: ``after_fork`` drops the inherited instance without closing it and replaces the
lock (it may have been copied in a held state). With a factory, the child creates its own
instance on first use. Around an existing instance (no factory) there is nothing to recreate it
with: any use in the child raises ``ForkedUseError`` telling you to pass a factory, rather than
silently sharing the parent's connection.
"""

from __future__ import annotations

import functools
import os
import threading
import time
import types
from collections.abc import Callable
from typing import Any, TypeVar, overload

from safeclients import _fork
from safeclients._fork import ARMED
from safeclients._policy import DiscardOn, Policy, log
from safeclients._proxy import make_proxy
from safeclients.errors import ForkedUseError

T = TypeVar("T")

# Seconds the interpreter-exit hook waits for a lock held by a thread still inside a call.
SHUTDOWN_WAIT = 1.0


def is_factory(obj: object) -> bool:
    """A function, method, partial or class is a factory; anything else is an instance."""
    return isinstance(
        obj,
        (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType, functools.partial),
    )


class LockedPolicy(Policy[T]):
    kind = "locked"

    def __init__(
        self,
        obj_or_factory: T | Callable[[], T],
        *,
        close: Callable[[T], object] | None = None,
        discard_on: DiscardOn | None = None,
    ) -> None:
        factory: Callable[[], T] | None = None
        instance: T | None = None
        if is_factory(obj_or_factory):
            factory = obj_or_factory  # type: ignore[assignment]
        else:
            instance = obj_or_factory  # type: ignore[assignment]
        super().__init__(factory, close=close, discard_on=discard_on)
        # Guards _instance and every use of it; re-entrant so a client callback that comes
        # back through the proxy in the same thread does not deadlock.
        self.lock = threading.RLock()
        self.instance: T | None = instance
        # Pid of the process an instance given without a factory belongs to.
        self._owner_pid = os.getpid()
        self._orphaned = False
        if instance is not None:
            self.client_type = type(instance)
            if self.tracker is not None:
                self.tracker.created(instance)

    def wait_for_lock(self) -> None:
        """Slow path: another thread holds the lock; wait for it and count the wait."""
        start = time.monotonic()
        self.lock.acquire()
        self.count_wait(time.monotonic() - start)

    def create_locked(self) -> T:
        """Slow path, lock held: first use in this process, or first after dispose/discard."""
        if self._orphaned:
            raise ForkedUseError(
                f"this locked proxy wraps a {self.client_type.__name__ if self.client_type else ''}"
                f" instance created in process {self._owner_pid}, and process {os.getpid()} is a "
                f"fork of it: the instance cannot be shared across processes and there is no "
                f"factory to recreate it. Pass a factory: safeclients.locked(make_client) or "
                f"@safeclients.locked on a function that returns the client"
            )
        obj = self.create()
        self.instance = obj
        return obj

    def discard_locked(self, obj: T) -> None:
        """Lock held: the call raised one of discard_on; close the instance if replaceable."""
        if self._factory is None or self.instance is not obj:
            return
        self.instance = None
        self.close_instance(obj, discarded=True)

    def acquire(self) -> T:
        lock = self.lock
        if not lock.acquire(False):
            self.wait_for_lock()
        try:
            obj = self.instance
            if obj is None:
                obj = self.create_locked()
        except BaseException:
            lock.release()
            raise
        return obj

    def release(self, obj: T, broken: bool) -> None:
        try:
            if broken:
                self.discard_locked(obj)
        finally:
            self.lock.release()

    def peek(self) -> T:
        obj = self.enter()
        self.release(obj, False)
        return obj

    def live(self) -> int:
        return 0 if self.instance is None else 1

    def dispose(self, final: bool) -> None:
        with self.lock:
            if final:
                self._final = True
            obj, self.instance = self.instance, None
            if obj is not None:
                if self._factory is None and not final:
                    # Nothing could recreate it: keep it (closing would poison the proxy).
                    self.instance = obj
                else:
                    self.close_instance(obj, discarded=False)

    def shutdown(self) -> None:
        # A daemon thread may be stuck inside a call, holding the lock, as the interpreter exits:
        # wait a little, then give up rather than hang the exit.
        if not self.lock.acquire(timeout=SHUTDOWN_WAIT):
            self._final = True
            log.warning(
                "safeclients: at exit, a locked %s was still in use after %.1f s; left open",
                self.client_type.__name__ if self.client_type else "client",
                SHUTDOWN_WAIT,
            )
            return
        try:
            self.dispose(True)
        finally:
            self.lock.release()

    def after_fork(self) -> None:
        self.lock = threading.RLock()
        if self.instance is not None and self._factory is None:
            self._orphaned = True
        self.instance = None
        self._reset_common()

    def forwarder(self, name: str) -> object:
        policy = self
        is_broken = self.is_broken

        def forward(proxy: object, *args: Any, **kwargs: Any) -> Any:
            if not ARMED[0]:
                _fork.check()
            lock = policy.lock
            if not lock.acquire(False):
                policy.wait_for_lock()
            try:
                obj = policy.instance
                if obj is None:
                    obj = policy.create_locked()
                try:
                    return getattr(obj, name)(*args, **kwargs)
                except BaseException as exc:
                    if is_broken(exc):
                        policy.discard_locked(obj)
                    raise
            finally:
                lock.release()

        forward.__name__ = forward.__qualname__ = name
        return forward


@overload
def locked(
    obj_or_factory: type[T],
    *,
    close: Callable[[T], object] | None = ...,
    discard_on: DiscardOn | None = ...,
) -> T: ...


@overload
def locked(
    obj_or_factory: Callable[[], T],
    *,
    close: Callable[[T], object] | None = ...,
    discard_on: DiscardOn | None = ...,
) -> T: ...


@overload
def locked(
    obj_or_factory: None = ..., *, close: None = ..., discard_on: DiscardOn | None = ...
) -> Callable[[Callable[[], T]], T]: ...


@overload
def locked(
    obj_or_factory: None = ...,
    *,
    close: Callable[[Any], object],  # the client type is not known yet here
    discard_on: DiscardOn | None = ...,
) -> Callable[[Callable[[], T]], T]: ...


@overload
def locked(
    obj_or_factory: T,
    *,
    close: Callable[[T], object] | None = ...,
    discard_on: DiscardOn | None = ...,
) -> T: ...


def locked(
    obj_or_factory: Any = None,
    *,
    close: Callable[[Any], object] | None = None,
    discard_on: DiscardOn | None = None,
) -> Any:
    """A proxy over one instance whose every call runs under a re-entrant lock.

    A function, method, ``functools.partial`` or class is a factory (the instance is created on
    first use, and again in a fork child); anything else is the instance itself. Usable as a bare
    decorator, with arguments, or as a call. A call raising one of ``discard_on`` closes the
    instance and the next call creates a new one (only with a factory).
    """
    if obj_or_factory is None:

        def decorate(factory: Callable[[], Any]) -> Any:
            return locked(factory, close=close, discard_on=discard_on)

        return decorate
    policy: LockedPolicy[Any] = LockedPolicy(obj_or_factory, close=close, discard_on=discard_on)
    return make_proxy(policy, "locked")
