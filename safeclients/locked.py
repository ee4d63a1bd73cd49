"""``locked``: one instance per process; every call on it runs under a re-entrant lock.

The lock is held for the whole call (and for a whole ``checkout`` block, ``with proxy:`` block,
or a derived object's life: a cursor), so calls from different threads are serialized on the
one instance. Waiting for the lock is counted in ``stats()`` (``waits``, ``wait_seconds``).

A use that outlives its call (a block, a cursor: a pin, see ``_uses``) does not keep the
``RLock``: it may end in another thread (a cursor collected there), and an ``RLock`` refuses a
release from a thread that does not own it, which would leave the proxy locked for ever. So when
such a use begins (``on_pin``, in the thread that holds the lock), the policy records it as
``pinned`` and releases the lock; a call from another thread that gets the lock and finds the
instance pinned gives the lock back and waits until the pin ends (``enter_pinned``, counted as a
wait, ``LockTimeout`` after ``timeout``); the pin's end, in any thread, clears ``pinned`` and
wakes the waiters (``_Unpin``). The pinning context's own calls go in (nested). Plain calls pay
one attribute test for all this, and stay re-entrant (a client callback that calls the proxy
again in the same thread). A call from another asyncio task of the pinning thread is refused
(``AsyncUseError``): it would run inside the first task's block, and waiting would block the
event loop that must finish it.

Across a fork: ``after_fork`` drops the inherited instance without closing it and replaces the
lock (it may have been copied in a held state). With a factory, the child creates its own
instance on first use. Around an existing instance (no factory) there is nothing to recreate it
with: any use in the child raises ``ForkedUseError`` telling you to pass a factory, rather than
silently sharing the parent's connection.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, overload

from safeclients._discard import DiscardOn
from safeclients._factory import NOT_GIVEN, FunctionFactory, instance_or_factory, proxy_or_decorator
from safeclients._health import NO_HEALTH, Health, health_options
from safeclients._limits import DEFAULT_TIMEOUT, validate_timeout
from safeclients._policy import log
from safeclients._proxy import make_proxy
from safeclients._single import SingleInstancePolicy
from safeclients._use import Use
from safeclients._uses import Pin, running_task
from safeclients.errors import AsyncUseError, FactoryError, LockTimeout

T = TypeVar("T")

# Seconds the interpreter-exit hook waits for a lock held by a thread still inside a call.
SHUTDOWN_WAIT = 1.0


# The use of the one instance (see _use). `token` is the RLock, taken by this use (re-entrant: a
# callback's nested call takes it again), or an _Unpin when a pin's end gives the instance back
# (see the module docstring).
_GET = """\
token = policy.lock
if not token.acquire(False):
    policy.wait_for_lock(token)
if policy.pinned is not None:
    policy.enter_pinned(token)
obj = policy.instance
if obj is None:
    obj = policy.create_locked(token)
"""
# Health variant: appended to _GET.
_VET = """\
elif policy.due <= monotonic():
    obj = policy.vetted_locked(obj, token)
if policy.track_idle:
    policy.ages.used(obj)
"""
_PUT_BROKEN = """\
try:
    policy.discard_instance(obj)
finally:
    token.release()
"""


class LockedPolicy(SingleInstancePolicy[T]):
    kind = "locked"
    # Its re-entrant lock belongs to the thread: held across an await, every task of that
    # thread would get in. Async clients: per_loop or pooled.
    holds_across_await = False
    pin_hook = True  # on_pin: a pin takes the instance over from the lock

    USE = Use(get=_GET, put_ok="token.release()", put_broken=_PUT_BROKEN)
    # With check=/max_lifetime=/max_idle= (or a profile's check): vet the instance under the
    # lock when it is due (``_single``), at most once per check_interval.
    USE_HEALTH = Use(get=_GET + _VET, put_ok="token.release()", put_broken=_PUT_BROKEN)

    def __init__(
        self,
        obj_or_factory: T | Callable[[], T],
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        close: Callable[[T], object] | None = None,
        discard_on: DiscardOn | None = None,
        health: Health = NO_HEALTH,
    ) -> None:
        self.timeout = validate_timeout("locked", timeout)
        factory, instance = instance_or_factory(obj_or_factory)
        super().__init__(
            factory, instance=instance, close=close, discard_on=discard_on, health=health
        )

    def renew(self, *, drop: bool) -> None:
        super().renew(drop=drop)
        # Guards `instance` and every use of it; re-entrant so a client callback that comes
        # back through the proxy in the same thread does not deadlock.
        self.lock = threading.RLock()
        # The pin (a block, a cursor) that holds the instance past its call, or None. Set in
        # on_pin by the thread holding the lock; cleared by the pin's end, in any thread.
        self.pinned: Pin | None = None
        # Waiters for the pin's end; its lock guards nothing else.
        self.unpinned = threading.Condition(threading.Lock())

    def wait_for_lock(self, lock: Any) -> None:
        """Slow path: another thread holds the lock; wait up to ``timeout``, count the wait."""
        start = time.monotonic()
        got = lock.acquire(True, -1 if self.timeout is None else self.timeout)
        waited = time.monotonic() - start
        self.counters.waited(waited)
        if not got:
            raise LockTimeout(self.timeout or 0.0, waited)

    def on_pin(self, pin: Pin) -> None:
        """A use outlives its call (``_uses``), lock held: pin the instance, release the lock
        (it may be released from another thread when the pin ends: see the module)."""
        if pin.token is not self.lock:
            return
        self.pinned = pin
        pin.token = _Unpin(self, pin)
        self.lock.release()

    def enter_pinned(self, lock: Any) -> None:
        """Lock held and the instance pinned: go in if the pin is this context's, else give the
        lock back and wait for the pin to end (up to ``timeout``). Returns with the lock held."""
        started: float | None = None
        while True:
            pin = self.pinned
            if pin is None or pin.obj is None or pin.mine():
                if started is not None:
                    self.counters.waited(time.monotonic() - started)
                return
            if pin.task is not None and pin.owner == threading.get_ident() and running_task():
                lock.release()
                raise AsyncUseError(
                    f"another asyncio task of this thread holds this locked proxy's "
                    f"{type(pin.obj).__name__} in an open block or cursor: its lock belongs to "
                    f"the thread, so this task would run inside that block (and waiting would "
                    f"block the loop that must finish it); use safeclients.per_loop or pooled "
                    f"for an async client"
                )
            lock.release()
            now = time.monotonic()
            if started is None:
                started = now
            with self.unpinned:
                if self.pinned is pin and pin.obj is not None:
                    remaining = None if self.timeout is None else started + self.timeout - now
                    if remaining is not None and remaining <= 0:
                        self.counters.waited(now - started)
                        raise LockTimeout(self.timeout or 0.0, now - started)
                    self.unpinned.wait(remaining)
            if not lock.acquire(False):
                self.wait_for_lock(lock)

    def unpin(self, pin: Pin) -> None:
        """The pin ended (any thread): the instance is free again; wake the waiters."""
        with self.unpinned:
            if self.pinned is pin:
                self.pinned = None
            self.unpinned.notify_all()

    def held_by_a_use(self, obj: T) -> bool:
        pin = self.pinned
        return pin is not None and pin.obj is obj

    def vetted_locked(self, obj: T, lock: Any) -> T:
        """Health variant, lock held: vet the instance (``_single.vetted``); a retired one is
        replaced at once. Releases the lock if that fails (the use never started)."""
        try:
            kept = self.vetted(obj)
        except BaseException:
            lock.release()
            raise
        return kept if kept is not None else self.create_locked(lock)

    def create_locked(self, lock: Any) -> T:
        """Slow path, lock held: the first use in this process, or the first after dispose or
        discard. Releases the lock if creation fails (the use never started)."""
        try:
            return self.create_instance()
        except BaseException:
            lock.release()
            raise

    def dispose(self, final: bool) -> None:
        """Close the instance once no call or pin of another thread is on it (waits as a call
        does, up to ``timeout``; ``LockTimeout`` if one holds it longer)."""
        lock = self.lock
        if not lock.acquire(False):
            self.wait_for_lock(lock)
        if self.pinned is not None:
            self.enter_pinned(lock)
        try:
            self._dispose_locked(final)
        finally:
            lock.release()

    def _dispose_locked(self, final: bool) -> None:
        obj = self.take_instance(final)
        if obj is not None:
            self.close_instance(obj, discarded=False)

    def shutdown(self) -> None:
        # A daemon thread may be stuck inside a call, holding the lock, as the interpreter exits
        # (or a cursor of another thread may pin the instance): wait a little, then give up
        # rather than hang the exit.
        if not self.lock.acquire(timeout=SHUTDOWN_WAIT):
            self._give_up_at_exit()
            return
        try:
            pin = self.pinned
            if pin is not None and pin.obj is not None and not pin.mine():
                self._give_up_at_exit()
                return
            self._dispose_locked(True)
        finally:
            self.lock.release()

    def _give_up_at_exit(self) -> None:
        self._final = True
        log.warning(
            "safeclients: at exit, a locked %s was still in use after %.1f s; left open",
            self.client_type.__name__ if self.client_type else "client",
            SHUTDOWN_WAIT,
        )


class _Unpin:
    """A pin's token: what the policy's put releases when the pin ends (any thread)."""

    __slots__ = ("_policy", "_pin")

    def __init__(self, policy: LockedPolicy[Any], pin: Pin) -> None:
        self._policy = policy
        self._pin = pin

    def release(self) -> None:
        self._policy.unpin(self._pin)


@overload
def locked(
    obj_or_factory: type[T],
    *,
    timeout: float | None = ...,
    close: Callable[[T], object] | None = ...,
    discard_on: DiscardOn | None = ...,
    check: Callable[[Any], object] | None = ...,
    check_interval: float | None = ...,
    max_lifetime: float | None = ...,
    max_idle: float | None = ...,
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
    check: Callable[[Any], object] | None = ...,
    check_interval: float | None = ...,
    max_lifetime: float | None = ...,
    max_idle: float | None = ...,
) -> T: ...


@overload
def locked(
    obj_or_factory: None = ...,
    *,
    timeout: float | None = ...,
    close: None = ...,
    discard_on: DiscardOn | None = ...,
    check: Callable[[Any], object] | None = ...,
    check_interval: float | None = ...,
    max_lifetime: float | None = ...,
    max_idle: float | None = ...,
) -> Callable[[Callable[[], T]], T]: ...


@overload
def locked(
    obj_or_factory: None = ...,
    *,
    timeout: float | None = ...,
    close: Callable[[Any], object],  # the client type is not known yet here
    discard_on: DiscardOn | None = ...,
    check: Callable[[Any], object] | None = ...,
    check_interval: float | None = ...,
    max_lifetime: float | None = ...,
    max_idle: float | None = ...,
) -> Callable[[Callable[[], T]], T]: ...


@overload
def locked(
    obj_or_factory: T,
    *,
    timeout: float | None = ...,
    close: Callable[[T], object] | None = ...,
    discard_on: DiscardOn | None = ...,
    check: Callable[[Any], object] | None = ...,
    check_interval: float | None = ...,
    max_lifetime: float | None = ...,
    max_idle: float | None = ...,
) -> T: ...


def locked(
    obj_or_factory: Any = NOT_GIVEN,
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
    close: Callable[[Any], object] | None = None,
    discard_on: DiscardOn | None = None,
    check: Callable[[Any], object] | None = None,
    check_interval: float | None = None,
    max_lifetime: float | None = None,
    max_idle: float | None = None,
) -> Any:
    """A proxy over one instance whose every call runs under a re-entrant lock.

    A function, method, ``functools.partial`` or class is a factory (the instance is created on
    first use, and again in a fork child); anything else is the instance itself. Usable as a bare
    decorator, with arguments, or as a call. A call raising one of ``discard_on`` closes the
    instance and the next call creates a new one (only with a factory). A thread that waits
    longer than ``timeout`` seconds for the lock gets ``LockTimeout`` (a ``PoolTimeout``);
    ``timeout=None`` waits without limit.

    Health (with a factory): ``check(client)`` runs on the instance at most once per
    ``check_interval`` seconds, under the lock, and replaces it if it raises or returns False
    (default: the client profile's check); ``max_lifetime`` and ``max_idle`` (seconds) replace
    an instance older, or unused longer. An instance held by a block or a cursor is never
    replaced under it.
    """
    if obj_or_factory is None:
        raise FactoryError(
            "locked(None): pass a client or a factory, or use @safeclients.locked "
            "(or @safeclients.locked(...)) as a decorator"
        )
    validate_timeout("locked", timeout)
    health = health_options(
        "locked",
        check=check,
        check_interval=check_interval,
        max_lifetime=max_lifetime,
        max_idle=max_idle,
    )

    def make(obj_or_factory: Any) -> Any:
        return make_proxy(
            LockedPolicy(
                obj_or_factory,
                timeout=timeout,
                close=close,
                discard_on=discard_on,
                health=health,
            )
        )

    return proxy_or_decorator(None if obj_or_factory is NOT_GIVEN else obj_or_factory, make)
