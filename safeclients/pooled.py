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

Async clients and async factories. An instance made inside a running loop belongs to it: an
async client (``is_async_client``: ``async with``, an async ``close``/``aclose``) is kept in its
loop's own free list (``get_bound``, ``_loop_free``), so a task of another loop (another thread's)
never gets it; when every slot is taken by another loop's idle instances, the longest idle of
them is closed, in its own loop, and its slot reused (``_evict_locked``); at a loop's shutdown its
idle instances are closed there and their slots freed. With no loop running, a method call of an
async client is deferred to the loop that awaits it. A factory that returns an awaitable
(``async def``, ``asyncpg.connect``, ``asyncpg.create_pool``) is awaited in the loop that will
use the instance, in the slot reserved for it: by the waiting task itself (``aget``), or, from
sync code in the loop (a plain method returning a coroutine), in a task of that loop whose
instance joins the free list when made, the call deferred meanwhile; a sync block cannot wait for
it (``FactoryError``), nor can anything with no loop running.

No lost wake-up, no lost slot, whatever interrupts a wait. Threads and tasks wait on the same
counts: a waiting task increments ``waiting`` and registers its future under ``_cond``'s lock
*before* re-checking the free list and the slots, so a releaser that appended before the check is
seen by it, and one that appended after it reads ``waiting`` > 0 and wakes a waiter (``wake``
notifies one thread *and* resolves one task's future: a spare wake-up only makes a waiter look
again). A task cancelled (or interrupted by any ``BaseException``) while it waits unregisters
under the same lock; if its future had already been resolved, the wake-up it consumed is passed
on to the next waiter. A wait never holds a slot: a slot is reserved and an instance popped only
synchronously, after the wait, in the same step that returns it (no ``await`` in between), and
a creation that fails or is interrupted gives its reserved slot back (``_create_in_slot``; an
async factory's awaitable, awaited in ``aget`` or in its own task, likewise); a
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
from contextvars import ContextVar
from typing import Any, TypeVar, overload

from safeclients._calls import CallThrough
from safeclients._discard import DiscardOn
from safeclients._factory import proxy_or_decorator
from safeclients._health import (
    NO_HEALTH,
    Ages,
    CheckPending,
    Health,
    async_check_refused,
    health_options,
    retire_note,
)
from safeclients._limits import DEFAULT_SIZE, DEFAULT_TIMEOUT, validate_size, validate_timeout
from safeclients._pending import Deferrer, NoToken
from safeclients._policy import Policy, is_async_client, log
from safeclients._proxy import make_proxy
from safeclients._shutdown import at_loop_shutdown
from safeclients._use import EMPTY, Use
from safeclients.errors import (
    FactoryError,
    NoRunningLoopError,
    PoolTimeout,
    SharedStateError,
    WouldBlockLoopError,
)

T = TypeVar("T")


def validate_limits(size: object, timeout: object) -> None:
    """Refuse a pool that could never hand out an instance, or a wait that cannot work."""
    validate_size("pooled", size)
    validate_timeout("pooled", timeout)


# The use of a pooled instance (see _use). First the context's pin (``_uses``): while a block
# or a derived object of this context holds an instance, every call of the context runs on it
# (the token is then the Pin, and nothing is given back). Else pop a free one (the free list is
# the token, so a disposed generation's instances are closed on return), else the slow path,
# outside the ``except``: a PoolTimeout or a factory's error must not read "during handling of
# IndexError: pop from empty list".
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
    obj = EMPTY
if obj is EMPTY:
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


# The use of an async client's instances (``loop_bound``): each instance belongs to the loop it
# was made in, so the get looks in the running loop's own free list (``get_bound``), and every
# instance goes back through ``release_slow`` (to the list it came from).
_GET_BOUND = """\
obj, token = policy.get_bound(name)
"""
_PUT_OK_BOUND = """\
if type(token) is list:
    policy.release_slow(obj, token, False)
"""


@functools.cache
def pooled_use(*, health: bool, bound: bool = False) -> Use:
    """The pooled ``Use``, with or without health checks, for sync clients or loop-bound
    (async) ones, composed from the fragments above."""
    get, put_ok = (_GET_BOUND, _PUT_OK_BOUND) if bound else (_GET, _PUT_OK)
    if health:
        get += "obj, token = policy.vetted(obj, token)\n"
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
        # Set once the factory has returned an awaitable (``async def``, asyncpg.connect, a
        # client that must be awaited to start: asyncpg.create_pool, redis.asyncio.Redis).
        self.async_factory = False
        # Set by ``use_for``: the client is async (or its factory is), so each instance belongs
        # to the loop it was made in and the compiled get is ``get_bound``.
        self.loop_bound = False
        # Creations of an async factory's instances started from sync code in a loop
        # (``_create_later``), kept alive until they end.
        self._creations: set[asyncio.Task[None]] = set()
        super().__init__(factory, close=close, discard_on=discard_on)

    def use_for(self, *, health: bool) -> Use:
        self.loop_bound = self.async_factory or is_async_client(self.client_type)
        return pooled_use(health=health, bound=self.loop_bound)

    def renew(self, *, drop: bool) -> None:
        # Guards _count, waiting and _live; waiters wait on it for a free instance or slot.
        # After gevent's patch, a waiter must yield to the hub, not block the OS thread every
        # greenlet runs on (no call is in flight at patch time).
        self._cond = threading.Condition(threading.Lock())
        if not drop:
            return
        self.ages.clear()
        # Idle instances of the current generation, most recently returned last (LIFO): those
        # made outside any running loop (all of a sync client's) ...
        self.free: list[T] = []
        # ... and, for a loop-bound client, each loop's own (current generation). A loop's
        # list is only created and popped in that loop's thread; closed loops are pruned in
        # the slow paths (``_evict_locked``), their idle instances' slots reused.
        self._loop_free: dict[asyncio.AbstractEventLoop, list[T]] = {}
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

    # -- free lists ----------------------------------------------------------------------------

    def _loop_list(self, loop: asyncio.AbstractEventLoop) -> list[T]:
        """The idle list of ``loop``'s instances (made on first need; in ``loop``'s thread)."""
        lists = self._loop_free
        free = lists.get(loop)
        if free is None:
            # A new loop (each asyncio.run() is one): forget closed loops with nothing idle,
            # so repeated runs do not pile up. Lock-free: a closed loop's list gets no more
            # instances (one coming back to a list no longer here is closed, ``_current``).
            for old, idle in tuple(lists.items()):
                if not idle and old.is_closed():
                    lists.pop(old, None)
            free = lists.setdefault(loop, [])
        return free

    def _own_list(self, loop: asyncio.AbstractEventLoop | None) -> list[T]:
        """Where a context of ``loop`` (None: no running loop) takes instances from."""
        if loop is None or not self.loop_bound:
            return self.free
        return self._loop_list(loop)

    def _current(self, free: list[T]) -> bool:
        """Whether ``free`` is a list of the current generation (not one a dispose replaced)."""
        # A snapshot: another loop's thread may add its list meanwhile.
        return free is self.free or any(mine is free for mine in tuple(self._loop_free.values()))

    def _evict_locked(self, keep: list[T]) -> tuple[T, asyncio.AbstractEventLoop | None] | None:
        """Under ``_cond``'s lock, every slot taken: the longest-idle instance of another list
        (a closed loop's first), out of the pool, its slot kept for the caller; or None.
        A loop-bound instance is never handed to another loop: it is closed instead."""
        candidates: list[tuple[list[T], asyncio.AbstractEventLoop | None]] = []
        for loop, free in list(self._loop_free.items()):
            if loop.is_closed():
                if not free:
                    del self._loop_free[loop]
                    continue
                candidates.insert(0, (free, loop))
            elif free and free is not keep:
                candidates.append((free, loop))
        if self.free and self.free is not keep:
            candidates.append((self.free, None))
        for idle, home in candidates:
            if idle:
                obj = idle.pop(0)
                self._live -= 1
                return obj, home
        return None

    def _close_home(
        self, obj: T, home: asyncio.AbstractEventLoop | None, *, discarded: bool = False
    ) -> None:
        """Close ``obj`` in its own loop ``home``: here if that is the running loop (or it has
        none, or it is gone), else scheduled into ``home``'s thread, where an async close is
        awaited."""
        self.ages.forget(obj)
        if home is not None and home is not self.running_loop() and home.is_running():
            try:
                home.call_soon_threadsafe(
                    functools.partial(self.close_instance, obj, discarded=discarded)
                )
                return
            except RuntimeError:
                pass  # closed meanwhile: close it here
        self.close_instance(obj, discarded=discarded)

    def _reuse_slot(
        self, evicted: tuple[T, asyncio.AbstractEventLoop | None], free: list[T]
    ) -> None:
        """Close an evicted instance; its slot now belongs to ``free``'s caller (given back if
        the close is cut off by a BaseException)."""
        try:
            self._close_home(*evicted)
        except BaseException:
            self._give_back_slot(free)
            raise

    # -- slow paths ----------------------------------------------------------------------------

    def get_bound(self, name: str | None) -> tuple[T, Any]:
        """The compiled get of a loop-bound client: the running loop's own free list, else
        ``acquire_slow``. With no running loop, a method call is deferred to the loop that
        awaits it (``asyncio.run(client.get(1))``): an instance used there belongs there."""
        loop = self.running_loop()
        if loop is None:
            if name is not None:
                return Deferrer(self, NoRunningLoopError), NoToken()  # type: ignore[return-value]
            free = self.free
        else:
            free = self._loop_free.get(loop) or self.free  # an empty or absent list: slow path
            if free is self.free:
                return self.acquire_slow(name)
        try:
            obj: T | object = free.pop()
        except IndexError:
            obj = EMPTY
        if obj is EMPTY:  # the slow path outside the except: its errors blame no IndexError
            return self.acquire_slow(name)
        return obj, free  # type: ignore[return-value]  # not EMPTY: an instance

    def acquire_slow(self, name: str | None = None) -> tuple[T, list[T]]:
        """Nothing was free: create within ``size``, or wait up to ``timeout``. Returns the
        instance and the free list it must go back to. In a thread whose event loop runs, never
        waits: a method call (``name``) is deferred, anything else refused (module docstring)."""
        loop = self.running_loop()
        if loop is not None:
            try:
                taken = self.take_now(loop)
            except _CreationStarted:
                if name is not None:
                    return Deferrer(self, FactoryError), NoToken()  # type: ignore[return-value]
                raise self._being_made() from None
            if taken is not None:
                return taken
            if name is not None:
                return Deferrer(self, WouldBlockLoopError), NoToken()  # type: ignore[return-value]
            raise self._would_block()
        if self.async_factory and name is not None:
            return Deferrer(self, FactoryError), NoToken()  # type: ignore[return-value]
        cond = self._cond
        started: float | None = None
        obj: T | None = None
        evicted: tuple[T, asyncio.AbstractEventLoop | None] | None = None
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
                    evicted = self._evict_locked(free)
                    if evicted is not None:
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
        if evicted is not None:
            self._reuse_slot(evicted, free)
        try:
            obj, free = self._create_in_slot(free)
        except FactoryError:
            if self.async_factory and name is not None:
                # Just learnt the factory is async: the call runs when awaited, in its loop.
                return Deferrer(self, FactoryError), NoToken()  # type: ignore[return-value]
            raise
        if self.loop_bound and name is not None:
            # Just learnt the client is async (its first instance): an instance used outside
            # a loop would bind to whichever loop awaits the call; leave it idle, defer the call.
            self.release_slow(obj, free, False)
            return Deferrer(self, NoRunningLoopError), NoToken()  # type: ignore[return-value]
        return obj, free

    def take_now(self, loop: asyncio.AbstractEventLoop | None = None) -> tuple[T, list[T]] | None:
        """A free instance of the running loop, or a new one in a free slot (or in the slot of
        an idle instance of another loop, closed for it), without waiting; None if none."""
        evicted: tuple[T, asyncio.AbstractEventLoop | None] | None = None
        with self._cond:
            if self._final:
                raise self.closed_error()
            free = self._own_list(loop)
            if free:
                return free.pop(), free
            if self._count >= self.size:
                evicted = self._evict_locked(free)
                if evicted is None:
                    return None
            else:
                self._count += 1
        if evicted is not None:
            self._reuse_slot(evicted, free)
        return self._create_in_slot(free)

    def _would_block(self) -> WouldBlockLoopError:
        return WouldBlockLoopError(
            f"all {self.size} instances of a pooled proxy are in use, and this thread runs an "
            f"event loop: waiting here would freeze every task of the loop; use `async with "
            f"safeclients.checkout(proxy)` (or await the call) inside a coroutine, or raise size="
        )

    async def aget(self) -> tuple[Any, Any]:
        """The use's ``get`` for a task: waits for a free instance *in* the loop (see the module
        docstring for why no wake-up and no slot is lost, even to a cancellation), and awaits
        an async factory's new instance here, in the loop that will use it."""
        loop = asyncio.get_running_loop()
        started: float | None = None
        while True:
            flag = _IN_AGET.set(True)
            try:
                taken: Any = self.get()  # in a loop thread: takes one now, or raises, never waits
            except WouldBlockLoopError:
                taken = None
            except (_Awaiting, _AwaitCheck) as pending:
                taken = pending
            finally:
                _IN_AGET.reset(flag)
            if type(taken) is _Awaiting:
                taken = await self._await_creation(taken, loop)
            elif type(taken) is _AwaitCheck:
                taken = await self._await_check(taken, loop)
            if taken is not None and type(taken[0]) is not Deferrer:
                if started is not None:
                    self.counters.waited(time.monotonic() - started)
                return taken[0], taken[1]
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
            if self._final or self._available_locked(loop):
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

    def _available_locked(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Under ``_cond``'s lock: whether a get in ``loop`` would find something now (its own
        idle instance, a free slot, or another list's idle instance to evict)."""
        if self._own_list(loop) or self._count < self.size:
            return True
        return bool(self.free) or any(tuple(self._loop_free.values()))

    def _wake_one_task(self, prefer: asyncio.AbstractEventLoop | None = None) -> None:
        """Resolve the first waiting task's future (one of loop ``prefer`` first: it can take
        the instance just returned to that loop's list); under ``_cond``'s lock."""
        waiters = self._task_waiters
        index = 0
        if prefer is not None:
            index = next((i for i, (loop, _) in enumerate(waiters) if loop is prefer), 0)
        while waiters:
            loop, future = waiters.pop(index)
            index = 0
            try:
                loop.call_soon_threadsafe(_resolve, future)
                return
            except RuntimeError:
                continue  # its loop is closed: that task will never run again

    def _create_in_slot(self, free: list[T]) -> tuple[T, list[T]]:
        """A slot of generation ``free`` is reserved: fill it, or give it back on failure.
        Returns the instance and the list it belongs to.

        An awaitable from the factory, inside a running loop, is awaited in that loop: by the
        task itself in ``aget`` (``_Awaiting`` carries it there, the slot still reserved), else
        in a task of its own (``_create_later``: the instance joins the free list when made).
        Outside a loop, a coroutine or future is refused (nothing can await it); a client
        that is merely awaitable as well (redis.asyncio.Redis) is an instance as it is."""
        loop = self.running_loop()
        try:
            made = self.call_factory()
            if inspect.isawaitable(made):
                self.async_factory = True
                if loop is None and (inspect.iscoroutine(made) or isinstance(made, asyncio.Future)):
                    raise self._refuse_async(made)
        except BaseException:
            self._give_back_slot(free)
            raise
        if loop is not None and inspect.isawaitable(made):
            if _IN_AGET.get():
                raise _Awaiting(made, free)
            self._create_later(loop, made, free)
        try:
            obj = self.adopt(made)
        except BaseException:
            self._give_back_slot(free)
            raise
        return self._install(obj, free, loop)

    def _refuse_async(self, made: Any) -> FactoryError:
        if inspect.iscoroutine(made):
            made.close()  # never to be awaited: no "never awaited" warning
        else:
            made.cancel()
        return FactoryError(
            f"the factory {self._factory_name()} passed to pooled() is async (it returned a "
            f"{type(made).__name__}) and no event loop runs here to await it: use the proxy "
            f"inside a coroutine (its instances are made and awaited in the loop that uses "
            f"them), or give pooled() a sync factory"
        )

    def _install(
        self, obj: T, free: list[T], loop: asyncio.AbstractEventLoop | None
    ) -> tuple[T, list[T]]:
        """A new instance in its reserved slot: counted, dated, and (made in a running loop)
        bound to that loop: in its list if the client is loop-bound, closed at its shutdown."""
        with self._cond:
            self._live += 1
        self.ages.born(obj)
        if loop is not None:
            if self.loop_bound and free is self.free:
                free = self._loop_list(loop)  # the first instance told us the client is async
            self._bind_to_loop(loop, obj, free)
        return obj, free

    async def _await_creation(
        self, pending: _Awaiting, loop: asyncio.AbstractEventLoop
    ) -> tuple[T, list[T]]:
        """In the task of ``aget``: await the factory's awaitable in its slot. Cancelled or
        failed, the slot is given back; the instance is this task's."""
        free = pending.free
        try:
            obj = self.adopt(await pending.made)
        except BaseException:
            self._give_back_slot(free)
            raise
        taken = self._install(obj, free, loop)
        if self.tracker is not None:
            self.tracker.enter(taken[0])  # the compiled get's check-mode enter, skipped above
        return taken

    async def _await_check(
        self, pending: _AwaitCheck, loop: asyncio.AbstractEventLoop
    ) -> tuple[T, list[T]]:
        """In the task of ``aget``: await an async check of the instance it took; a live one
        is this task's, a dead one is replaced in its slot. Cut off (a cancellation), the
        instance is discarded and its slot given back (it may be mid-reply)."""
        obj, free = pending.obj, pending.free
        try:
            alive: object = await pending.awaitable
        except Exception as exc:
            alive = exc
        except BaseException:
            self.release_slow(obj, free, True)
            raise
        reason = self.ages.judged(obj, alive)
        if reason:
            self._retire_in_slot(obj, free, reason)
            flag = _IN_AGET.set(True)
            try:
                obj, free = self._create_in_slot(free)
            except _Awaiting as creating:
                return await self._await_creation(creating, loop)
            finally:
                _IN_AGET.reset(flag)
        if self.tracker is not None:
            self.tracker.enter(obj)  # the compiled get's check-mode enter, skipped above
        return obj, free

    def _create_later(self, loop: asyncio.AbstractEventLoop, made: Any, free: list[T]) -> None:
        """From sync code in ``loop`` (a plain method returning a coroutine, a sync block):
        await the factory's awaitable in a task of ``loop``; the instance joins the free list
        when made (waking a waiter), and the slot is given back if it fails. Raises
        ``_CreationStarted``: the caller defers its call, or refuses a sync block."""

        async def finish() -> None:
            try:
                obj = self.adopt(await made)
            except BaseException as exc:
                if inspect.iscoroutine(made):
                    made.close()  # cancelled before it started: no "never awaited"
                self._give_back_slot(free)
                if not isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
                    log.warning(
                        "safeclients: the async factory %s of a pooled proxy raised %s: %s "
                        "(the waiting call will try it again)",
                        self._factory_name(),
                        type(exc).__name__,
                        exc,
                    )
                    return
                raise
            obj, home = self._install(obj, free, loop)
            self.release_slow(obj, home, False)

        task = loop.create_task(finish())
        self._creations.add(task)
        task.add_done_callback(self._creations.discard)
        raise _CreationStarted

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
        await self.closes_awaited()

    def vetted(self, obj: T, free: Any) -> tuple[T, Any]:
        """Health variant: replace ``obj`` (in its slot) if it is too old, idle or dead."""
        if type(obj) is Deferrer or self.ages.fresh(obj):
            # A deferred call: vetted when it takes its instance. A new one: nothing to vet
            # (psycopg_pool's rule: a connection is checked when it is reused).
            return obj, free
        try:
            reason = self.ages.verdict(self.health, self.effective_check, obj)
        except CheckPending as pending:
            if _IN_AGET.get():
                raise _AwaitCheck(pending.awaitable, obj, free) from None
            if self.running_loop() is None:
                self.release_slow(obj, free, False)
                raise async_check_refused(self.kind, pending) from None
            # A sync call in the loop: it runs when awaited, after the check, awaited there.
            if inspect.iscoroutine(pending.awaitable):
                pending.awaitable.close()  # this one is never awaited: no warning
            self.release_slow(obj, free, False)
            return Deferrer(self, WouldBlockLoopError), NoToken()  # type: ignore[return-value]
        except BaseException:
            # The check was cut off (a cancellation, gevent.Timeout, KeyboardInterrupt): the
            # instance may be mid-reply. Discard it; its slot is given back even if the close
            # is cut off too (release_slow's finally).
            self.release_slow(obj, free, True)
            raise
        if not reason:
            return obj, free
        self._retire_in_slot(obj, free, reason)
        try:
            return self._create_in_slot(free)  # the same slot; given back if creation fails
        except _CreationStarted:
            # An async factory's replacement is being awaited in a task: this call waits for
            # it when awaited (a sync block cannot: it is refused).
            return Deferrer(self, FactoryError), NoToken()  # type: ignore[return-value]

    def _retire_in_slot(self, obj: T, free: list[T], reason: str) -> None:
        """A vetted instance must go (``reason``): close it; its slot stays reserved for its
        replacement, or is given back if the close is cut off."""
        retire_note(self.kind, obj, reason)
        self.ages.forget(obj)
        with self._cond:
            self._live -= 1
        try:
            self.close_instance(obj, discarded=True)
        except BaseException:
            self._give_back_slot(free)  # the retiring close was cut off: the slot stays free
            raise

    def _give_back_slot(self, free: list[T]) -> None:
        with self._cond:
            if self._current(free):
                self._count -= 1
            self._cond.notify()
            self._wake_one_task()

    def wake(self) -> None:
        """A releaser saw waiters: wake one thread and one task (each re-checks itself)."""
        with self._cond:
            self._cond.notify()
            self._wake_one_task(self.running_loop())

    def release_slow(self, obj: T, free: list[T], broken: bool) -> None:
        """Broken instance, disposed generation, or final dispose: close instead of returning.
        (A loop-bound instance comes here every time: back to its loop's list.)"""
        if not broken and not self._final and self._current(free):
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
        loop = self.running_loop()
        with self._cond:
            if self._count >= self.size or self._final:
                return
            self._count += 1
            free = self._own_list(loop)
        try:
            obj, free = self._create_in_slot(free)
        except _CreationStarted:
            return  # an async factory's instance joins the free list when it is made
        self.put(obj, free, False)

    def bind_awaited(self, obj: T) -> None:
        pass  # bound where it is made (a free list per loop): ``_install``

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
        idle = [obj for free in self._loop_free.values() for obj in free]
        return [*self.free, *idle, *held]

    def dispose(self, final: bool) -> None:
        with self._cond:
            if final:
                self._final = True
            old, self.free = self.free, []
            lists, self._loop_free = self._loop_free, {}
            self._count = 0
            self._live -= len(old) + sum(len(free) for free in lists.values())
            self._cond.notify_all()
            while self._task_waiters:
                self._wake_one_task()
        while old:
            obj = old.pop()
            self.ages.forget(obj)
            self.close_instance(obj, discarded=False)
        for home, free in lists.items():
            while free:
                self._close_home(free.pop(), home)

    def attribute(self, name: str) -> Any:
        """``proxy.name`` with no forwarder. Looking it up takes an instance; where none can be
        had without waiting (a loop thread with none free; an async client with no loop
        running), a method of the client's class is looked up on the class instead, and each
        call of it is a use of its own (deferred if it must wait: ``acquire_slow``). An async
        factory's first use, the client type still unknown: the call runs when awaited."""
        kind = self.client_type
        loop = self.running_loop()
        waits = not self._own_list(loop) if loop is not None else self.loop_bound
        if kind is not None and waits:
            static = inspect.getattr_static(kind, name, None)
            if isinstance(static, (types.FunctionType, types.MethodDescriptorType)):
                if inspect.iscoroutinefunction(static):
                    return functools.partial(self.async_forwarder(name), self.own_proxy())
                return CallThrough(self, (name,), static)
        try:
            return super().attribute(name)
        except (FactoryError, WouldBlockLoopError) as exc:
            # No instance now, and no class to look the name up on yet (an async factory's
            # first instance is still being awaited): taken for a method, its call deferred.
            if self.client_type is not None or not self.async_factory or name.startswith("__"):
                raise
            return getattr(Deferrer(self, type(exc)), name)

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


class _Awaiting(Exception):  # noqa: N818 (a signal, not an error)
    """Internal, from ``_create_in_slot`` to ``aget`` in the same task: the factory returned
    ``made``, an awaitable, for the slot reserved in ``free``; await it here."""

    def __init__(self, made: Any, free: list[Any]) -> None:
        super().__init__()
        self.made = made
        self.free = free


class _AwaitCheck(Exception):  # noqa: N818 (a signal, not an error)
    """Internal, from ``vetted`` to ``aget`` in the same task: the check of ``obj`` (taken
    from ``free``) returned an awaitable; await it here."""

    def __init__(self, awaitable: Any, obj: Any, free: list[Any]) -> None:
        super().__init__()
        self.awaitable = awaitable
        self.obj = obj
        self.free = free


class _CreationStarted(Exception):  # noqa: N818 (a signal, not an error)
    """Internal: an async factory's instance is being awaited in a task of the running loop
    (``_create_later``); a sync use cannot wait for it."""


# Set by ``aget`` around its get: a new instance's awaitable goes back to it (``_Awaiting``).
_IN_AGET: ContextVar[bool] = ContextVar("safeclients_pooled_aget", default=False)


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
