"""``locked``: one instance per process; every call on it runs under a re-entrant lock.

The lock is held for the whole call (and for a whole ``checkout`` block, ``with proxy:`` block,
or a derived object's life: a cursor), so calls from different threads are serialized on the
one instance. Waiting for the lock is counted in ``stats()`` (``waits``, ``wait_seconds``).

Why not an ``RLock``: a use that outlives a call (a cursor) may end in another thread, when the
cursor is collected there, and an ``RLock`` refuses a release from a thread that does not own
it (the lock would then stay held for ever). So the lock is a plain ``Lock`` (any thread may
release it) with its owner recorded beside it: ``owner`` is the ident of the thread (or
greenlet) holding it, set right after acquiring and cleared right before releasing, so
``owner == get_ident()`` is true only in the thread that holds it. That thread's calls are
nested (a callback through the proxy, a call during a cursor's life) and take nothing. A nested
call from another asyncio task of that thread, while a block or cursor of the first task holds
the lock, is refused (``AsyncUseError``): it would run inside the first task's transaction.

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
from collections.abc import Callable
from typing import Any, TypeVar, overload

from safeclients._limits import DEFAULT_TIMEOUT, validate_timeout
from safeclients._policy import (
    NOT_GIVEN,
    DiscardOn,
    FunctionFactory,
    Policy,
    instance_or_factory,
    log,
)
from safeclients._proxy import make_proxy
from safeclients._use import Use
from safeclients._uses import Pin
from safeclients.errors import AsyncUseError, FactoryError, ForkedUseError, LockTimeout

T = TypeVar("T")

# Seconds the interpreter-exit hook waits for a lock held by a thread still inside a call.
SHUTDOWN_WAIT = 1.0


class LockedPolicy(Policy[T]):
    kind = "locked"
    # Its re-entrant lock belongs to the thread: held across an await, every task of that
    # thread would get in. Async clients: per_loop or pooled.
    holds_across_await = False
    pin_hook = True  # on_pin: which pin holds the lock (nested() refuses another task's use)

    # `token` is the lock (this use took it), a Pin (nested in this context's open block or
    # cursor: see _uses) or None (nested in a call of this thread: a callback).
    USE = Use(
        get="""
            token = policy.lock
            if token.acquire(False):
                policy.owner = get_ident()
            elif policy.owner == get_ident():
                token = policy.nested()
            else:
                policy.wait_for_lock(token)
            obj = policy.instance
            if obj is None:
                obj = policy.create_locked(token)
        """,
        put_ok="""
            if token is policy.lock:
                policy.owner = 0
                token.release()
        """,
        put_broken="""
            if type(token) is Pin:
                token.lost = True
            else:
                try:
                    policy.discard_locked(obj)
                finally:
                    if token is policy.lock:
                        policy.owner = 0
                        token.release()
        """,
    )

    def __init__(
        self,
        obj_or_factory: T | Callable[[], T],
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        close: Callable[[T], object] | None = None,
        discard_on: DiscardOn | None = None,
    ) -> None:
        self.timeout = validate_timeout("locked", timeout)
        factory, instance = instance_or_factory(obj_or_factory)
        super().__init__(factory, close=close, discard_on=discard_on, instance=instance)
        self._reset_lock()
        self.instance: T | None = instance
        # The process whose instances this policy holds (named in the fork child's error).
        self._owner_pid = os.getpid()
        if instance is not None and self.tracker is not None:
            self.tracker.created(instance)

    def _reset_lock(self) -> None:
        """(Re)make the lock: at creation, in a fork child, after gevent's patch."""
        # Guards `instance` and every use of it; `owner` is the ident of the thread holding
        # it, or 0 (see the module docstring: why not an RLock).
        self.lock = threading.Lock()
        self.owner = 0
        # The pin (a block or cursor) that took the lock, if one did: see nested().
        self.lock_pin: Pin | None = None

    def wait_for_lock(self, lock: Any) -> None:
        """Slow path: another thread holds the lock; wait up to ``timeout``, count the wait."""
        start = time.monotonic()
        got = lock.acquire(True, -1 if self.timeout is None else self.timeout)
        waited = time.monotonic() - start
        self.count_wait(waited)
        if not got:
            raise LockTimeout(self.timeout or 0.0, waited)
        self.owner = threading.get_ident()

    def nested(self) -> Pin | None:
        """This thread holds the lock already: a nested use, inside this context's pin (a block
        or a cursor) or a callback. Refused from another task of this thread while a pin of
        the first task holds the lock: it would run inside that task's block."""
        pin = self.pins.get()
        if pin is not None and pin.mine():
            return pin
        holder = self.lock_pin
        if holder is not None and holder.obj is not None and holder.task is not None:
            raise AsyncUseError(
                f"another asyncio task of this thread holds this locked proxy's "
                f"{type(holder.obj).__name__} in an open block or cursor: a locked proxy's "
                f"lock belongs to its thread, so this task would run inside that block; use "
                f"safeclients.per_loop or pooled for an async client"
            )
        return None

    def create_locked(self, token: Any) -> T:
        """Slow path, lock held: first use in this process, or first after dispose/discard.
        Releases the lock if creation fails and this use took it (the use never started)."""
        try:
            obj = self.create()
        except BaseException:
            if token is self.lock:
                self.owner = 0
                self.lock.release()
            raise
        self.instance = obj
        return obj

    def discard_locked(self, obj: T) -> None:
        """Lock held: the call raised one of discard_on; close the instance if replaceable."""
        if not self.replaceable or self.instance is not obj:
            return
        self.instance = None
        self.close_instance(obj, discarded=True)

    def prime(self) -> None:
        obj, token = self.get()
        self.put(obj, token, False)

    def existing(self) -> T | None:
        return self.instance

    def live(self) -> int:
        return 0 if self.instance is None else 1

    def dispose(self, final: bool) -> None:
        """Close the instance once no call is running on it (waits for the lock, up to
        ``timeout``; ``LockTimeout`` if a call holds it longer). From the thread holding it
        (inside a block), at once."""
        lock = self.lock
        if self.owner == threading.get_ident():
            self._dispose_locked(final)
            return
        if lock.acquire(False):
            self.owner = threading.get_ident()
        else:
            self.wait_for_lock(lock)
        try:
            self._dispose_locked(final)
        finally:
            self.owner = 0
            lock.release()

    def _dispose_locked(self, final: bool) -> None:
        if final:
            self._final = True
        obj = self.instance
        if obj is None or (not self.replaceable and not final):
            # Nothing could recreate an instance given without a factory: keep it.
            return
        self.instance = None
        self.close_instance(obj, discarded=False)

    def shutdown(self) -> None:
        # A daemon thread may be stuck inside a call, holding the lock, as the interpreter exits:
        # wait a little, then give up rather than hang the exit.
        if self.owner == threading.get_ident():  # the exiting thread holds it (a block)
            self._dispose_locked(True)
            return
        if not self.lock.acquire(timeout=SHUTDOWN_WAIT):
            self._final = True
            log.warning(
                "safeclients: at exit, a locked %s was still in use after %.1f s; left open",
                self.client_type.__name__ if self.client_type else "client",
                SHUTDOWN_WAIT,
            )
            return
        try:
            self._dispose_locked(True)
        finally:
            self.lock.release()

    def green_reset(self) -> None:
        # gevent just patched threading (see _green): an OS lock made before would block the
        # one OS thread every greenlet runs on; threading.Lock() is greenlet-aware now, and
        # get_ident (rebound in the compiled paths by _codegen) the greenlet's.
        self._reset_lock()

    def on_pin(self, pin: Pin) -> None:
        if pin.token is self.lock:
            self.lock_pin = pin

    def after_fork(self) -> None:
        self._reset_lock()
        orphan = self.instance if not self.replaceable else None
        self.instance = None
        self._reset_common()
        if orphan is not None:
            self._factory = _orphaned_factory(type(orphan).__name__, self._owner_pid)
        self._owner_pid = os.getpid()


def _orphaned_factory(client: str, owner: int) -> Callable[[], Any]:
    """What a fork child gets in place of an instance it inherited and cannot recreate."""

    def refuse() -> Any:
        raise ForkedUseError(
            f"this locked proxy wraps a {client} instance created in process {owner}, and "
            f"process {os.getpid()} is a fork of it: the instance cannot be shared across "
            f"processes and there is no factory to recreate it. Pass a factory: "
            f"safeclients.locked(make_client) or @safeclients.locked on a function that "
            f"returns the client"
        )

    return refuse


@overload
def locked(
    obj_or_factory: type[T],
    *,
    timeout: float | None = ...,
    close: Callable[[T], object] | None = ...,
    discard_on: DiscardOn | None = ...,
) -> T: ...


# A function or a partial is a factory; a callable *instance* falls through to the last
# overload, typed as itself (see FunctionFactory), as it is used at run time.
@overload
def locked(
    obj_or_factory: FunctionFactory[T] | functools.partial[T],
    *,
    timeout: float | None = ...,
    close: Callable[[T], object] | None = ...,
    discard_on: DiscardOn | None = ...,
) -> T: ...


@overload
def locked(
    obj_or_factory: None = ...,
    *,
    timeout: float | None = ...,
    close: None = ...,
    discard_on: DiscardOn | None = ...,
) -> Callable[[Callable[[], T]], T]: ...


@overload
def locked(
    obj_or_factory: None = ...,
    *,
    timeout: float | None = ...,
    close: Callable[[Any], object],  # the client type is not known yet here
    discard_on: DiscardOn | None = ...,
) -> Callable[[Callable[[], T]], T]: ...


@overload
def locked(
    obj_or_factory: T,
    *,
    timeout: float | None = ...,
    close: Callable[[T], object] | None = ...,
    discard_on: DiscardOn | None = ...,
) -> T: ...


def locked(
    obj_or_factory: Any = NOT_GIVEN,
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
    close: Callable[[Any], object] | None = None,
    discard_on: DiscardOn | None = None,
) -> Any:
    """A proxy over one instance whose every call runs under a re-entrant lock.

    A function, method, ``functools.partial`` or class is a factory (the instance is created on
    first use, and again in a fork child); anything else is the instance itself. Usable as a bare
    decorator, with arguments, or as a call. A call raising one of ``discard_on`` closes the
    instance and the next call creates a new one (only with a factory). A thread that waits
    longer than ``timeout`` seconds for the lock gets ``LockTimeout`` (a ``PoolTimeout``);
    ``timeout=None`` waits without limit.
    """
    if obj_or_factory is None:
        raise FactoryError(
            "locked(None): pass a client or a factory, or use @safeclients.locked "
            "(or @safeclients.locked(...)) as a decorator"
        )
    if obj_or_factory is NOT_GIVEN:
        validate_timeout("locked", timeout)

        def decorate(factory: Callable[[], Any]) -> Any:
            return locked(factory, timeout=timeout, close=close, discard_on=discard_on)

        return decorate
    policy: LockedPolicy[Any] = LockedPolicy(
        obj_or_factory, timeout=timeout, close=close, discard_on=discard_on
    )
    return make_proxy(policy, "locked")
