"""``pooled``: a bounded LIFO pool; each call checks an instance out for that call only.

Fast path: the free list is a plain ``list``; ``pop()`` and ``append()`` are atomic under the GIL,
so a call that finds a free instance takes no lock at all. Slow path (nothing free): under the
condition ``_cond``, create a new instance if fewer than ``size`` exist, else wait up to
``timeout`` and raise ``PoolTimeout`` with the numbers. No lost wake-up: a waiter increments
``_waiting`` *before* re-checking the free list, and a releaser appends *before* reading
``_waiting`` (then notifies under the condition's lock, which the waiter holds until it waits).

A call that raises one of ``discard_on`` closes its instance instead of returning it, and frees
its slot so a replacement can be created. ``dispose`` swaps in a fresh free list: instances idle
in the old one are closed now, instances checked out are closed when they come back (a returning
call sees that its list is no longer the pool's). For a moment after a dispose, up to ``size``
old instances still in use coexist with new ones. Known gap: an instance whose call returns in
the instant between a dispose's swap and its draining of the old list can land in the drained
list; it is then closed by garbage collection, not by ``close``.

Inside a running event loop
---------------------------
Nothing here ever blocks a running loop. ``acquire_slow`` looks for a loop running in the
calling thread first: with one, it takes a free instance or a free slot and never waits. A method
call that would have to wait is deferred (``_pending``: it takes its instance when awaited, the
way redis.asyncio's commands, plain functions returning coroutines, are used); a sync block or a
special method raises ``WouldBlockLoopError``. ``aget`` (``async def`` methods, deferred calls,
``async with checkout(proxy)``) waits *in* the loop: a future per waiting task, resolved by the
releaser through ``call_soon_threadsafe``.

No lost wake-up, no lost slot, whatever interrupts a wait. Threads and tasks wait on the same
counts: a waiting task increments ``waiting`` and registers its future under ``_cond``'s lock
*before* re-checking the free list and the slots, so a releaser that appended before the check is
seen by it, and one that appended after it reads ``waiting`` > 0 and wakes a waiter (``wake``
notifies one thread *and* resolves one task's future: a spare wake-up only makes a waiter look
again). A task cancelled (or interrupted by any ``BaseException``) while it waits unregisters
under the same lock; if its future had already been resolved, the wake-up it consumed is passed
on to the next waiter. A wait never holds a slot: a slot is reserved and an instance popped only
synchronously, after the wait, in the same step that returns it (no ``await`` in between), and
a creation that fails or is interrupted gives its reserved slot back (``_create_in_slot``); a
health check or a retiring close that is interrupted gives the slot back too (``vetted``).

Across a fork: ``after_fork`` drops the free list and the counts without closing anything and
replaces the condition; the child creates its own instances on demand.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import textwrap
import threading
import time
import types
import weakref
from collections.abc import AsyncGenerator, Callable
from typing import Any, TypeVar, overload

from safeclients._calls import CallThrough
from safeclients._discard import DiscardOn
from safeclients._factory import proxy_or_decorator
from safeclients._health import (
    NO_HEALTH,
    Ages,
    Health,
    health_options,
    retire_note,
)
from safeclients._limits import DEFAULT_SIZE, DEFAULT_TIMEOUT, validate_size, validate_timeout
from safeclients._pending import Deferrer, NoToken
from safeclients._policy import Policy
from safeclients._proxy import make_proxy
from safeclients._shutdown import at_loop_shutdown
from safeclients._use import Use
from safeclients.errors import PoolTimeout, SharedStateError, WouldBlockLoopError

T = TypeVar("T")


def validate_limits(size: object, timeout: object) -> None:
    """Refuse a pool that could never hand out an instance, or a wait that cannot work."""
    validate_size("pooled", size)
    validate_timeout("pooled", timeout)


# The use of a pooled instance (see _use). First the context's pin (``_uses``): while a block
# or a derived object of this context holds an instance, every call of the context runs on it
# (the token is then the Pin, and nothing is given back). Else pop a free one (the free list is
# the token, so a disposed generation's instances are closed on return), else the slow path.
_GET_PINNED = """\
pin = policy.pins.get()
if pin is not None and pin.obj is not None and pin.mine():
    if pin.lost:
        refuse_lost(policy)
    obj = pin.obj
    token = pin
else:
"""
_GET = """\
token = policy.free
try:
    obj = token.pop()
except IndexError:
    obj, token = policy.acquire_slow(name)
"""
_PUT_OK = """\
if token is policy.free:
    token.append(obj)
    if policy.waiting:
        policy.wake()
elif type(token) is list:
    policy.release_slow(obj, token, False)
"""
_PUT_BROKEN = """\
if type(token) is list:
    policy.release_slow(obj, token, True)
else:
    lose(token)
"""


@functools.cache
def pooled_use(*, health: bool) -> Use:
    """The pooled ``Use``, with or without health checks, composed from the fragments above."""
    get, put_ok = _GET, _PUT_OK
    if health:
        get += "obj = policy.vetted(obj, token)\n"
        put_ok = "if type(token) is list:\n    policy.ages.used(obj)\n" + put_ok
    return Use(
        get=_GET_PINNED + textwrap.indent(get, "    "), put_ok=put_ok, put_broken=_PUT_BROKEN
    )


class PooledPolicy(Policy[T]):
    kind = "pooled"
    async_gets = True  # a get may wait for a free instance: async methods wait in the loop
    async_blocks = True  # `async with checkout(proxy)`: the task holds one instance for the block

    USE = pooled_use(health=False)
    # With check=/max_lifetime=/max_idle= (or a profile's check): vet what leaves the free
    # list, and note when each instance comes back.
    USE_HEALTH = pooled_use(health=True)

    def __init__(
        self,
        factory: Callable[[], T],
        *,
        size: int = DEFAULT_SIZE,
        timeout: float | None = DEFAULT_TIMEOUT,
        close: Callable[[T], object] | None = None,
        discard_on: DiscardOn | None = None,
        health: Health = NO_HEALTH,
    ) -> None:
        self.size = validate_size("pooled", size)
        self.timeout = validate_timeout("pooled", timeout)
        self.health = health
        # When each instance was made and last given back (health checks; slow paths only
        # when no health option is set).
        self.ages = Ages()
        # The running loop of the calling thread, or None (C function; no exception to catch).
        self.running_loop = asyncio._get_running_loop
        super().__init__(factory, close=close, discard_on=discard_on)

    def renew(self, *, drop: bool) -> None:
        # Guards _count, waiting and _live; waiters wait on it for a free instance or slot.
        # After gevent's patch, a waiter must yield to the hub, not block the OS thread every
        # greenlet runs on (no call is in flight at patch time).
        self._cond = threading.Condition(threading.Lock())
        if not drop:
            return
        self.ages.clear()
        # Idle instances of the current generation, most recently returned last (LIFO).
        self.free: list[T] = []
        # Instances of the current generation that exist (idle, in use, or being created).
        self._count = 0
        # Threads and tasks in the slow path; a releaser wakes one only when this is non-zero.
        self.waiting = 0
        # Loop -> the generators that retire its instances at its shutdown (_bind_to_loop).
        self._loop_closers: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, list[AsyncGenerator[None, None]]
        ] = weakref.WeakKeyDictionary()
        # The futures of the tasks waiting in their loop (aget), first come first woken;
        # guarded by _cond's lock.
        self._task_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        # Every instance this process created and has not closed, for live().
        self._live = 0

    # -- slow paths ----------------------------------------------------------------------------

    def acquire_slow(self, name: str | None = None) -> tuple[T, list[T]]:
        """Nothing was free: create within ``size``, or wait up to ``timeout``. Returns the
        instance and the free list it must go back to. In a thread whose event loop runs, never
        waits: a method call (``name``) is deferred, anything else refused (module docstring)."""
        if self.running_loop() is not None:
            taken = self.take_now()
            if taken is not None:
                return taken
            if name is not None:
                return Deferrer(self, WouldBlockLoopError), NoToken()  # type: ignore[return-value]
            raise self._would_block()
        cond = self._cond
        started: float | None = None
        obj: T | None = None
        reserved = timed_out = False
        with cond:
            self.waiting += 1
            try:
                while not self._final:
                    free = self.free
                    try:
                        obj = free.pop()
                        break
                    except IndexError:
                        pass
                    if self._count < self.size:
                        self._count += 1
                        reserved = True
                        break
                    now = time.monotonic()
                    if started is None:
                        started = now
                    if self.timeout is None:
                        cond.wait()
                        continue
                    remaining = started + self.timeout - now
                    if remaining <= 0:
                        timed_out = True
                        break
                    cond.wait(remaining)
            finally:
                self.waiting -= 1
        if started is not None:
            waited = time.monotonic() - started
            self.counters.waited(waited)
            if timed_out:
                raise PoolTimeout(self.size, self.timeout or 0.0, waited)
        if self._final and obj is None and not reserved:
            raise self.closed_error()
        if not reserved:
            assert obj is not None
            return obj, free
        return self._create_in_slot(free), free

    def take_now(self) -> tuple[T, list[T]] | None:
        """A free instance, or a new one in a free slot, without waiting; None if neither."""
        with self._cond:
            if self._final:
                raise self.closed_error()
            free = self.free
            if free:
                return free.pop(), free
            if self._count >= self.size:
                return None
            self._count += 1
        return self._create_in_slot(free), free

    def _would_block(self) -> WouldBlockLoopError:
        return WouldBlockLoopError(
            f"all {self.size} instances of a pooled proxy are in use, and this thread runs an "
            f"event loop: waiting here would freeze every task of the loop; use `async with "
            f"safeclients.checkout(proxy)` (or await the call) inside a coroutine, or raise size="
        )

    async def aget(self) -> tuple[Any, Any]:
        """The use's ``get`` for a task: waits for a free instance *in* the loop (see the module
        docstring for why no wake-up and no slot is lost, even to a cancellation)."""
        loop = asyncio.get_running_loop()
        started: float | None = None
        while True:
            try:
                taken = self.get()  # in a loop thread: takes one now, or raises, never waits
            except WouldBlockLoopError:
                pass
            else:
                if started is not None:
                    self.counters.waited(time.monotonic() - started)
                return taken
            now = time.monotonic()
            if started is None:
                started = now
            remaining = None if self.timeout is None else started + self.timeout - now
            if remaining is not None and remaining <= 0:
                waited = now - started
                self.counters.waited(waited)
                raise PoolTimeout(self.size, self.timeout or 0.0, waited)
            await self._wait_in_loop(loop, remaining)

    async def _wait_in_loop(self, loop: asyncio.AbstractEventLoop, remaining: float | None) -> None:
        """Wait until a releaser wakes this task (or ``remaining`` seconds pass)."""
        future: asyncio.Future[None] = loop.create_future()
        waiter = (loop, future)
        with self._cond:
            if self.free or self._count < self.size or self._final:
                return  # freed since get() looked: look again
            self.waiting += 1
            self._task_waiters.append(waiter)
        woken = False
        try:
            await asyncio.wait((future,), timeout=remaining)
            woken = future.done()
        finally:
            with self._cond:
                self.waiting -= 1
                try:
                    self._task_waiters.remove(waiter)
                except ValueError:
                    # Resolved (or being resolved) by a releaser: this task took a wake-up. If it
                    # leaves without looking (cancelled, interrupted), pass the wake-up on.
                    if not woken:
                        self._wake_one_task()

    def _wake_one_task(self) -> None:
        """Resolve the first waiting task's future; under ``_cond``'s lock."""
        while self._task_waiters:
            loop, future = self._task_waiters.pop(0)
            try:
                loop.call_soon_threadsafe(_resolve, future)
                return
            except RuntimeError:
                continue  # its loop is closed: that task will never run again

    def _create_in_slot(self, free: list[T]) -> T:
        """A slot of generation ``free`` is reserved: fill it, or give it back on failure."""
        try:
            obj = self.create()
        except BaseException:
            self._give_back_slot(free)
            raise
        with self._cond:
            self._live += 1
        self.ages.born(obj)
        loop = self.running_loop()
        if loop is not None:
            self._bind_to_loop(loop, obj, free)
        return obj

    def _bind_to_loop(self, loop: asyncio.AbstractEventLoop, obj: T, free: list[T]) -> None:
        """An instance made inside a running loop is that loop's (an async client binds to
        it): when the loop shuts down, close it there and free its slot, so the next loop
        (a worker's, after an import-time ``asyncio.run()`` warm-up) makes its own."""

        async def retire() -> None:
            await self._retire_at_loop_end(obj, free)

        closer = at_loop_shutdown(retire)
        if closer is not None:
            # Kept until the loop goes (a generator dropped while its loop runs would run its
            # step in the middle of the loop): one small generator per instance made there.
            self._loop_closers.setdefault(loop, []).append(closer)

    async def _retire_at_loop_end(self, obj: T, free: list[T]) -> None:
        """At its loop's shutdown, inside it: an idle instance of that loop leaves the pool,
        closed (awaited) there. One in use then (a task that outlived the cancellation) or
        gone already (closed, discarded, disposed) is left as it is."""
        with self._cond:
            try:
                free.remove(obj)
            except ValueError:
                return
            self._live -= 1
        self.ages.forget(obj)
        try:
            self.close_instance(obj, discarded=False)
        finally:
            self._give_back_slot(free)
        closing = list(self._async_closes)
        if closing:
            await asyncio.gather(*closing, return_exceptions=True)

    def vetted(self, obj: T, free: list[T]) -> T:
        """Health variant: replace ``obj`` (in its slot) if it is too old, idle or dead."""
        if type(obj) is Deferrer:
            return obj  # a deferred call: vetted when it takes its instance
        try:
            reason = self.ages.verdict(self.health, self.effective_check, obj)
        except BaseException:
            # The check was cut off (a cancellation, gevent.Timeout, KeyboardInterrupt): the
            # instance may be mid-reply. Discard it; its slot is given back even if the close
            # is cut off too (release_slow's finally).
            self.release_slow(obj, free, True)
            raise
        if not reason:
            return obj
        retire_note(self.kind, obj, reason)
        self.ages.forget(obj)
        with self._cond:
            self._live -= 1
        try:
            self.close_instance(obj, discarded=True)
        except BaseException:
            self._give_back_slot(free)  # the retiring close was cut off: the slot stays free
            raise
        return self._create_in_slot(free)  # the same slot; given back if creation fails

    def _give_back_slot(self, free: list[T]) -> None:
        with self._cond:
            if free is self.free:
                self._count -= 1
            self._cond.notify()
            self._wake_one_task()

    def wake(self) -> None:
        """A releaser saw waiters: wake one thread and one task (each re-checks itself)."""
        with self._cond:
            self._cond.notify()
            self._wake_one_task()

    def release_slow(self, obj: T, free: list[T], broken: bool) -> None:
        """Broken instance, disposed generation, or final dispose: close instead of returning."""
        if not broken and free is self.free and not self._final:
            free.append(obj)
            if self.waiting:
                self.wake()
            return
        with self._cond:
            self._live -= 1
        self.ages.forget(obj)
        try:
            self.close_instance(obj, discarded=broken)
        finally:
            self._give_back_slot(free)

    # -- override surface ----------------------------------------------------------------------

    def prime(self) -> None:
        with self._cond:
            if self._count >= self.size or self._final:
                return
            self._count += 1
            free = self.free
        self.put(self._create_in_slot(free), free, False)

    def existing(self) -> T | None:
        raise AttributeError(
            "a pooled proxy has no single wrapped instance: take one for a block with "
            "`with safeclients.checkout(proxy) as client:`"
        )

    def live(self) -> int:
        return self._live

    def inherited(self) -> list[T]:
        # The idle ones, and the one the forking context's open block or cursor holds; those
        # other threads held are referenced by their thread states, which CPython leaves
        # uncleared in a fork child.
        pin = self.pins.get()
        held = [pin.obj] if pin is not None and pin.obj is not None else []
        return [*self.free, *held]

    def dispose(self, final: bool) -> None:
        with self._cond:
            if final:
                self._final = True
            old, self.free = self.free, []
            self._count = 0
            self._live -= len(old)
            self._cond.notify_all()
            while self._task_waiters:
                self._wake_one_task()
        while old:
            obj = old.pop()
            self.ages.forget(obj)
            self.close_instance(obj, discarded=False)

    def attribute(self, name: str) -> Any:
        """``proxy.name`` with no forwarder. Looking it up takes an instance; in a loop thread
        with none free, a method of the client's class is looked up on the class instead, and
        each call of it is a use of its own (deferred if it must wait: ``acquire_slow``)."""
        kind = self.client_type
        if kind is not None and self.running_loop() is not None and not self.free:
            static = inspect.getattr_static(kind, name, None)
            if isinstance(static, (types.FunctionType, types.MethodDescriptorType)):
                if inspect.iscoroutinefunction(static):
                    return functools.partial(self.async_forwarder(name), self.own_proxy())
                return CallThrough(self, (name,), static)
        return super().attribute(name)

    def set_attribute(self, name: str, value: Any) -> None:
        """``proxy.name = value``: only inside a block or a derived object's life, on the
        context's pinned instance. Anywhere else it would change one pooled instance, chosen at
        random, and not the others: refused with the way to do it."""
        pin = self.pins.get()
        if pin is not None and pin.mine():
            setattr(pin.obj, name, value)
            return
        raise SharedStateError(
            f"setting {name!r} on a pooled proxy would change one of its {self.size} instances, "
            f"chosen at random, and not the others: configure it in the factory (every "
            f"instance is made there), or set it on one instance for a block with `with "
            f"safeclients.checkout(proxy) as client: client.{name} = ...`"
        )

    def del_attribute(self, name: str) -> None:
        pin = self.pins.get()
        if pin is not None and pin.mine():
            delattr(pin.obj, name)
            return
        raise SharedStateError(
            f"deleting {name!r} on a pooled proxy would change one of its {self.size} "
            f"instances, chosen at random: do it in the factory, or inside `with "
            f"safeclients.checkout(proxy) as client:`"
        )


def _resolve(future: asyncio.Future[None]) -> None:
    """In the waiting task's loop: wake it (unless it gave up meanwhile)."""
    if not future.done():
        future.set_result(None)


@overload
def pooled(
    factory: Callable[[], T],
    *,
    size: int = ...,
    timeout: float | None = ...,
    close: Callable[[T], object] | None = ...,
    discard_on: DiscardOn | None = ...,
    check: Callable[[T], object] | None = ...,
    check_interval: float | None = ...,
    max_lifetime: float | None = ...,
    max_idle: float | None = ...,
) -> T: ...


@overload
def pooled(
    factory: None = ...,
    *,
    size: int = ...,
    timeout: float | None = ...,
    close: Callable[[Any], object] | None = ...,  # the client type is not known yet here
    discard_on: DiscardOn | None = ...,
    check: Callable[[Any], object] | None = ...,
    check_interval: float | None = ...,
    max_lifetime: float | None = ...,
    max_idle: float | None = ...,
) -> Callable[[Callable[[], T]], T]: ...


def pooled(
    factory: Callable[[], T] | None = None,
    *,
    size: int = DEFAULT_SIZE,
    timeout: float | None = DEFAULT_TIMEOUT,
    close: Callable[[T], object] | None = None,
    discard_on: DiscardOn | None = None,
    check: Callable[[T], object] | None = None,
    check_interval: float | None = None,
    max_lifetime: float | None = None,
    max_idle: float | None = None,
) -> T | Callable[[Callable[[], T]], T]:
    """A proxy over a bounded pool of up to ``size`` instances from ``factory``.

    A plain method call checks an instance out for that call only (and for as long as what it
    returns is still bound to the instance: a cursor, a generator, an awaitable);
    ``safeclients.checkout`` holds one for a block. With none free within ``timeout`` seconds,
    ``PoolTimeout`` (``timeout=None`` waits without limit). A call raising one of
    ``discard_on`` (default: the client profile's judgement that the connection is dead, by
    error code, connection state or reply code; without one, OSError, a connection-error
    class, a PEP 249 ``InterfaceError``/``OperationalError``, and the profile's ``broken``
    classes) closes its instance, which is never handed out again.

    Health (psycopg_pool's names): ``check(client)`` runs before an instance idle for
    ``check_interval`` seconds or more is reused, and replaces it if it raises or returns False.
    Given explicitly, it runs before every reuse unless ``check_interval`` says otherwise; by
    default the client profile's check (e.g. PyMySQL's ``ping``) runs on instances idle 1 s;
    ``max_lifetime`` and ``max_idle`` (seconds) replace instances older, or idle longer, than
    that. A size that is not an int >= 1, or a timeout that is negative, nan or infinite:
    ValueError now.
    """
    validate_limits(size, timeout)
    health = health_options(
        "pooled",
        check=check,
        check_interval=check_interval,
        max_lifetime=max_lifetime,
        max_idle=max_idle,
        explicit_check_interval=0.0,  # check= given: before every reuse, as psycopg_pool
    )

    def make(factory: Callable[[], T]) -> T:
        return make_proxy(
            PooledPolicy(
                factory,
                size=size,
                timeout=timeout,
                close=close,
                discard_on=discard_on,
                health=health,
            )
        )

    return proxy_or_decorator(factory, make)
