"""``per_loop``: one instance per running event loop, for async clients.

Async clients (``redis.asyncio.Redis``, ``httpx.AsyncClient``, ``aiohttp.ClientSession``, asyncpg
connections) bind to the loop they are first used on; a module-global one used from a second
loop fails ("Future attached to a different loop", "Event loop is closed"). ``per_loop(factory)``
keeps one instance per loop: created lazily on the first use inside a running loop, and closed
inside that same loop before it goes away.

Keyed by the loop itself, weakly
--------------------------------
The records are a ``weakref.WeakKeyDictionary`` keyed by the loop object: never ``id(loop)``,
which a new loop reuses once the old one is freed. Most clients hold their loop (through their
transports), which would keep a weak key alive, so records of loops that are *closed* are also
dropped (not closed: that needs the loop) whenever a loop creates its instance and whenever
``stats()`` counts them. A loop closed without the shutdown step below thus leaves no record.

Closed inside its own loop
--------------------------
With each instance, the policy starts (one synchronous step) a small async generator whose
``finally`` awaits the client's close: ``close=`` if given, else ``aclose()``, else ``close()``,
awaiting what they return when it is awaitable. A loop registers every async generator first
iterated in it (``sys.get_asyncgen_hooks``) and ``loop.shutdown_asyncgens()`` closes them, inside
the loop; ``asyncio.run()`` and ``asyncio.Runner`` always call it, after cancelling the remaining
tasks. The generator is started with the loop's *first-iteration* hook only, never its
finalizer, so it holds no reference to the loop, and a generator freed without that shutdown
(the loop was closed by hand) just ends, closing nothing.

No lock across an await
-----------------------
A method call on the proxy takes the calling loop's instance and returns what the method
returns (the coroutine), which the caller awaits: ``await client.get("k")``. Nothing is held
meanwhile; ``_records_lock`` guards only the table's changes (a few dict operations). An error
that ``discard_on`` accepts retires the loop's instance, whether the call raised it or the
awaited coroutine did (``watched``); the next use creates another. A cancellation is
never such an error here: one task's cancelled call does not close the instance under the other
tasks (async clients recover from it themselves). An instance retired for another error, or by
``dispose``, is closed only once no awaited call on it still runs (each is counted while it
runs: ``watched``); a coroutine made on it but not yet awaited then meets a closed client.

Calls made before their loop runs, async factories
--------------------------------------------------
``asyncio.run(client.get(1))`` makes the call before the loop runs: with no running loop, a
method call is deferred (``_pending.PendingCall``, a coroutine) and takes its loop's instance
when awaited. A factory that is ``async def`` or returns an awaitable (``asyncpg.connect``,
``asyncpg.create_pool``) is awaited in a task of the loop that will use the instance
(``_start_creation``); calls meanwhile are deferred to it, one instance per loop however many
tasks ask at once; a factory that fails fails every waiting call, and the next call tries
again. A sync use that needs the instance while it is being awaited (a ``with`` block, a
special method) is a ``FactoryError``; ``async with checkout(proxy)`` waits for it.

Across a fork
-------------
``after_fork`` swaps in an empty table and marks every inherited record orphaned: the child
never closes (and never uses) an instance its parent created, even if it runs an inherited
loop's shutdown; its own loops create their own instances.

Which thread runs what: the compiled paths run in the thread of the loop that calls them; the
close runs inside its loop (``shutdown_asyncgens``, or a task scheduled by ``dispose``);
``dispose`` in whichever thread calls ``safeclients.dispose``.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
import weakref
from collections.abc import AsyncGenerator, Callable
from typing import Any, Generic, TypeVar, overload

from safeclients import _uses
from safeclients._discard import DiscardOn
from safeclients._factory import proxy_or_decorator
from safeclients._pending import Deferrer, PendingCall
from safeclients._policy import Policy, log
from safeclients._proxy import make_proxy
from safeclients._shutdown import at_loop_shutdown
from safeclients._use import Use
from safeclients.errors import ConcurrentUseError, FactoryError, NoRunningLoopError

T = TypeVar("T")

# What a record's instance is doing. OPEN: in the table. RETIRED: out of it (dispose, discard),
# its close scheduled as a task in its loop. CLOSED: its close has begun (only once).
# ORPHANED: never to be closed here (a fork child's inherited record, or its loop closed first).
OPEN, RETIRED, CLOSED, ORPHANED = "open", "retired", "closed", "orphaned"


class _LoopRecord(Generic[T]):
    """One loop's instance, and the async generator that closes it at the loop's shutdown."""

    __slots__ = ("obj", "pid", "state", "discarded", "closer", "loop_ref", "running", "close_due")

    def __init__(self, obj: T, loop: asyncio.AbstractEventLoop) -> None:
        self.obj = obj
        self.pid = os.getpid()
        self.state = OPEN
        self.discarded = False
        # Awaited calls on the instance still running (``PerLoopPolicy.watched``); only
        # changed and read in the loop's thread. A retired record whose calls still run is
        # closed when the last one ends (``close_due``).
        self.running = 0
        self.close_due = False
        self.closer: AsyncGenerator[None, None] | None = None
        self.loop_ref = weakref.ref(loop)

    def closable(self) -> bool:
        return self.state in (OPEN, RETIRED) and self.pid == os.getpid()


class PerLoopPolicy(Policy[T]):
    kind = "per_loop"
    async_blocks = True
    tasks_share = True  # an async client serves the tasks of its loop at once
    track_holds = True  # a one-task client (asyncpg's Connection) is refused to other tasks

    USE = Use(
        get="""
            try:
                token = policy.table[policy.ref(policy.running_loop())]
                obj = token.obj
            except (KeyError, TypeError):
                obj = policy.create_for_loop(name)
                token = policy.record_of(obj)
        """,
        put_ok="",
        put_broken="policy.discard(obj)",
    )

    def __init__(
        self,
        factory: Callable[[], T],
        *,
        close: Callable[[T], object] | None = None,
        discard_on: DiscardOn | None = None,
    ) -> None:
        # The loop running in the calling thread, or None (C function; no exception to catch).
        self.running_loop = asyncio._get_running_loop
        self.ref = weakref.ref
        super().__init__(factory, close=close, discard_on=discard_on)
        # One task's cancellation never retires the loop's instance: the other tasks are using
        # it, and async clients recover from a cancelled call themselves (redis.asyncio and
        # httpx drop that call's connection; asyncpg cancels the query on the server). Every
        # other BaseException still discards (discard_predicate's rule).
        judged = self.is_broken

        def is_broken(exc: BaseException, obj: Any) -> bool:
            return not isinstance(exc, asyncio.CancelledError) and judged(exc, obj)

        self.is_broken = is_broken
        self._bind_use()  # the compiled paths take the predicate at binding

    def renew(self, *, drop: bool) -> None:
        # Guards changes to `records` (never held across an await, nor while a client runs).
        self._records_lock = threading.Lock()
        if not drop:
            return
        # Loop -> its record; weak on the loop (see the module docstring for closed loops).
        self.records: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopRecord[T]] = (
            weakref.WeakKeyDictionary()
        )
        # Records out of the table whose close is pending (kept alive, with their closer).
        self._retiring: set[_LoopRecord[T]] = set()
        # The fast path reads the dict behind `records` directly (the same lookup that
        # WeakKeyDictionary.__getitem__ makes, without its Python-level call): `ref(loop)` is
        # CPython's shared plain weakref to the loop, hashed and compared as the loop itself.
        self.table: dict[weakref.ref[asyncio.AbstractEventLoop], _LoopRecord[T]] = self.records.data  # type: ignore[attr-defined]  # not in typeshed's stub
        # Loop -> the task awaiting an async factory's instance for it (``_start_creation``).
        self._creating: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = (
            weakref.WeakKeyDictionary()
        )
        # Close tasks scheduled by dispose/discard, kept alive until they finish.
        self._tasks: set[asyncio.Future[None]] = set()

    # -- slow paths ----------------------------------------------------------------------------

    def _no_loop(self) -> NoRunningLoopError:
        client = self.client_type.__name__ if self.client_type is not None else "client"
        return NoRunningLoopError(
            f"a per_loop proxy for {client} was used in thread {threading.current_thread().name!r}"
            f" with no running event loop: per_loop keeps one instance per running loop, so use "
            f"it inside a coroutine (asyncio.run(main()), await client.method(...)); for sync "
            f"code, use per_thread, locked or pooled"
        )

    def create_for_loop(self, name: str | None = None) -> T:
        """Slow path: the running loop's first use (or first after dispose or discard).

        With no running loop, a method call (``name``) is deferred to the loop that will await
        it (``_pending``): ``asyncio.run(client.get(1))``; anything else (a block, a special
        method) is a ``NoRunningLoopError``. An async factory's instance is awaited in a task
        of the loop (``_start_creation``); meanwhile method calls are deferred the same way."""
        loop = self.running_loop()
        if loop is None:
            if name is not None:
                return Deferrer(self, NoRunningLoopError)  # type: ignore[return-value]
            raise self._no_loop()
        _uses.refuse_lost(self)  # never a new instance in the middle of a lost block
        record = self.records.get(loop)
        if record is not None:
            return record.obj
        if loop not in self._creating:
            if getattr(loop, "_asyncgens_shutdown_called", False):
                raise self._shutting_down()
            self.prune()
            made = self.call_factory()
            if not inspect.isawaitable(made):
                return self._register(loop, self.adopt(made)).obj
            self._start_creation(loop, made)
        if name is not None:
            return Deferrer(self, FactoryError)  # type: ignore[return-value]
        raise self._being_made()

    def _register(self, loop: asyncio.AbstractEventLoop, obj: T) -> _LoopRecord[T]:
        """In ``loop``'s thread: the loop's new instance goes into the table, with its closer."""
        record = _LoopRecord(obj, loop)
        record.closer = _arm_closer(self, record)
        with self._records_lock:
            self.records[loop] = record
        return record

    def _start_creation(self, loop: asyncio.AbstractEventLoop, made: Any) -> asyncio.Task[None]:
        """An async factory returned ``made``: await it in a task of ``loop`` (the loop that will
        use the instance), then register it. Callers wait for the task, shielded: one cancelled
        while waiting does not cancel the creation the others wait for."""

        async def finish() -> None:
            self._register(loop, self.adopt(await made))

        task = loop.create_task(finish())
        self._creating[loop] = task

        def done(task: asyncio.Task[None]) -> None:
            self._creating.pop(loop, None)
            if not task.cancelled():
                task.exception()  # retrieved: the waiting calls raise it

        task.add_done_callback(done)
        return task

    async def aget(self) -> tuple[Any, Any]:
        """The use's ``get`` for an awaited call or ``async with``: awaits an async factory's
        instance in the running loop first."""
        loop = asyncio.get_running_loop()
        if self.records.get(loop) is None:
            task = self._creating.get(loop)
            if task is None:
                self.create_for_loop("")  # a sync factory's instance now, or a task started
                task = self._creating.get(loop)
            if task is not None:
                await asyncio.shield(task)
        taken = self.get()
        self._refuse_if_held(taken[0])
        return taken

    def _refuse_if_held(self, obj: T) -> None:
        """A client that serves one task at a time (the profile's ``one_task``: asyncpg's
        Connection), held by another task of the loop (a block, a transaction, a cursor):
        this task's use would run inside that task's transaction, and be committed or rolled
        back with it. Refused, never silently wrong."""
        profile = self.profile
        if profile is None or not profile.one_task or id(obj) not in self.held:
            return
        pin = self.pins.get()
        if pin is not None and pin.obj is obj and pin.mine():
            return  # this task's own block: its calls are the block's
        raise ConcurrentUseError(
            f"this loop's {type(obj).__name__} is held by another task (a transaction, a block "
            f"or a cursor), and it serves one task at a time: this task's statement would run "
            f"inside that task's transaction. per_loop shares one instance per loop; give each "
            f"task a connection of its own: safeclients.pooled(connect), with `async def "
            f"connect(): return await asyncpg.connect(dsn)`, or per_loop(lambda: "
            f"asyncpg.create_pool(dsn))"
        )

    def _shutting_down(self) -> NoRunningLoopError:
        return NoRunningLoopError(
            "a per_loop proxy was first used in a loop that has already shut its async "
            "generators down (a `finally` run by asyncio.run's shutdown): an instance made now "
            "could never be closed inside that loop; make the first use earlier, or use the "
            "client in a loop that is still running"
        )

    def prune(self) -> None:
        """Drop (without closing) the records of loops that are closed."""
        with self._records_lock:
            stale = [loop for loop in list(self.records.keys()) if loop.is_closed()]
            for loop in stale:
                record = self.records.pop(loop, None)
                if record is not None:
                    record.state = ORPHANED
            for record in list(self._retiring):
                gone = record.loop_ref()
                if gone is None or gone.is_closed():
                    record.state = ORPHANED
                    self._retiring.discard(record)

    async def close_once(self, record: _LoopRecord[T]) -> None:
        """Inside the record's loop: forget the record and await its instance's close, once."""
        with self._records_lock:
            if not record.closable():
                return
            record.state = CLOSED
            self._retiring.discard(record)
            loop = record.loop_ref()
            if loop is not None and self.records.get(loop) is record:
                del self.records[loop]
        try:
            await self._aclose(record.obj, discarded=record.discarded)
        except asyncio.CancelledError:
            # A close task cancelled mid-close (asyncio.run cancels the tasks left before it
            # shuts the generators down): the record's closer finishes the close there.
            with self._records_lock:
                record.state = RETIRED
                self._retiring.add(record)
            raise

    async def _aclose(self, obj: T, *, discarded: bool) -> None:
        """Close one instance inside its loop; a failing close is logged and counted."""
        if self.tracker is not None:
            self.tracker.forget(obj)
        ok = False
        try:
            if self._close_fn is not None:
                result: object = self._close_fn(obj)
            else:
                method = getattr(obj, "aclose", None)
                if not callable(method):
                    method = getattr(obj, "close", None)
                result = method() if callable(method) else None
            if inspect.isawaitable(result):
                await result
            ok = True
        except Exception as exc:
            log.warning(
                "safeclients: closing a %s held by a per_loop proxy raised %s: %s; the instance "
                "is dropped",
                type(obj).__name__,
                type(exc).__name__,
                exc,
            )
        self.counters.closed(ok, discarded=discarded)

    def _retire(
        self, loop: asyncio.AbstractEventLoop, record: _LoopRecord[T], discarded: bool
    ) -> None:
        """Record already out of the table: close its instance inside ``loop``, in a task (or,
        if that task never runs, at the loop's shutdown, from the record's closer)."""
        if record.state != OPEN:
            return
        record.discarded = discarded
        if loop.is_closed():
            record.state = ORPHANED  # nowhere to close it: dropped, like a loop closed by hand
            return
        record.state = RETIRED
        with self._records_lock:
            self._retiring.add(record)
        try:
            if self.running_loop() is loop:
                self._close_when_idle(loop, record)
            else:
                loop.call_soon_threadsafe(self._close_when_idle, loop, record)
        except RuntimeError:
            pass  # the loop closed meanwhile: the next prune drops the record

    def _close_when_idle(self, loop: asyncio.AbstractEventLoop, record: _LoopRecord[T]) -> None:
        """In ``loop``'s thread: close a retired record's instance in a task, now if no awaited
        call on it still runs, else when the last one ends (``watched``): an error in one task,
        or a dispose, never closes the instance under another task's running call."""
        if record.running:
            record.close_due = True
            return
        record.close_due = False
        task = loop.create_task(self.close_once(record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def record_of(self, obj: T) -> _LoopRecord[T] | None:
        """Slow path: the running loop's record if ``obj`` is its instance (the token of a
        use; None for a deferred call)."""
        loop = self.running_loop()
        record = self.records.get(loop) if loop is not None else None
        return record if record is not None and record.obj is obj else None

    def watched(self, obj: T, token: Any, result: Any) -> Any:
        """An awaited call on a loop's instance (the token is its record): counted while it
        runs (see ``_close_when_idle``), its errors judged as every call's are."""
        if type(token) is _LoopRecord:
            return self._running(token, obj, token, result)
        return super().watched(obj, token, result)

    async def _running(self, record: _LoopRecord[T], obj: T, token: Any, result: Any) -> Any:
        if self.held:
            try:
                self._refuse_if_held(obj)
            except ConcurrentUseError:
                if inspect.iscoroutine(result):
                    result.close()  # never to run: no "never awaited"
                raise
        record.running += 1
        try:
            return await result
        except BaseException as exc:
            if self.is_broken(exc, obj):
                self.put(obj, token, True)  # retires the record: closed when this call ends
            raise
        finally:
            record.running -= 1
            if record.close_due and not record.running:
                loop = record.loop_ref()
                if loop is not None and not loop.is_closed():
                    self._close_when_idle(loop, record)

    def discard(self, obj: T) -> None:
        """A call raised one of discard_on before returning: retire this loop's instance."""
        loop = self.running_loop()
        if loop is None:
            return
        with self._records_lock:
            record = self.records.get(loop)
            if record is None or record.obj is not obj:
                return
            del self.records[loop]
        self._retire(loop, record, True)

    def attribute(self, name: str) -> Any:
        """``proxy.name`` with no forwarder: outside a running loop, a method to be called and
        awaited in the loop that runs it (``asyncio.run(client.get(1))`` for a client whose type
        the factory does not say); any other use of it is a ``NoRunningLoopError``."""
        loop = self.running_loop()
        if loop is not None and loop not in self.records and not self._final:
            self.create_for_loop("")  # a sync factory's instance now; an async one's started
        if (loop is None or (loop in self._creating and loop not in self.records)) and not (
            self._final
        ):
            static = (
                _static_attribute(self.client_type, name) if self.client_type is not None else None
            )
            if self.client_type is None or callable(static):
                return _LoopMethod(self, name)
        return super().attribute(name)

    # -- override surface ----------------------------------------------------------------------

    def prime(self) -> None:
        if self.running_loop() is not None:
            self.create_for_loop("")  # an async factory's: started, awaited by the calls
        # Else: no loop's instance to make yet; the lookup defers (``attribute``).

    def existing(self) -> T | None:
        loop = self.running_loop()
        record = self.records.get(loop) if loop is not None else None
        return None if record is None else record.obj

    def live(self) -> int:
        self.prune()
        return len(self.records)

    def dispose(self, final: bool) -> None:
        """Forget every loop's instance now; each is closed inside its own loop by a task
        (scheduled thread-safely; run when that loop next runs). A closed loop's is dropped."""
        if final:
            self._final = True
        with self._records_lock:
            taken = list(self.records.items())
            self.records.clear()
        for loop, record in taken:
            self._retire(loop, record, False)

    def after_fork(self) -> None:
        for record in [*self.records.values(), *self._retiring]:
            record.state = ORPHANED
        super().after_fork()

    def inherited(self) -> list[Any]:
        """Fork child: every loop's instance the parent held, open or retiring (not only the
        running loop's: a child forked outside any loop has none running), for ``_fork.keep``:
        their finalizers never run here (an unclosed async client's ``__del__`` may abort a
        transport whose connection is the parent's)."""
        return [record.obj for record in [*self.records.values(), *self._retiring]]

    def on_lost(self, obj: Any) -> None:
        """A block's (or a derived object's) error showed the loop's instance dead: retire it
        now; this context's next use inside that block is refused (``create_for_loop`` asks
        ``refuse_lost``) while the loop's other tasks get a new instance."""
        self.discard(obj)


def _static_attribute(kind: type, name: str) -> object:
    try:
        return inspect.getattr_static(kind, name)
    except AttributeError:
        return None


class _LoopMethod:
    """``proxy.name`` looked up outside a running loop: calling it makes a ``PendingCall`` (run
    in the loop that awaits it); reading anything from it is the ``NoRunningLoopError`` the
    lookup deferred (a value read outside a loop has no loop's instance to come from)."""

    __slots__ = ("_policy", "_name")

    def __init__(self, policy: PerLoopPolicy[Any], name: str) -> None:
        self._policy = policy
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> PendingCall:
        error = NoRunningLoopError if self._policy.running_loop() is None else FactoryError
        return PendingCall(self._policy, self._name, args, kwargs, error)

    def __getattr__(self, name: str) -> Any:
        policy = self._policy
        raise policy._no_loop() if policy.running_loop() is None else policy._being_made()

    def __repr__(self) -> str:
        return f"<safeclients per_loop method {self._name!r}, to be awaited in a running loop>"


def _arm_closer(
    policy: PerLoopPolicy[Any], record: _LoopRecord[Any]
) -> AsyncGenerator[None, None] | None:
    """Close the record's instance inside its loop at the loop's shutdown (``_shutdown``); None
    if the loop installs no async-generator hooks (then only ``dispose`` closes it). Also the
    fallback for a retired record whose close task was cancelled before it ran (``asyncio.run``
    cancels the tasks left, then shuts the generators down)."""

    async def close() -> None:
        if record.closable():  # else: closed already, or a fork child's inherited record
            await policy.close_once(record)

    return at_loop_shutdown(close)


@overload
def per_loop(
    factory: Callable[[], T],
    *,
    close: Callable[[T], object] | None = ...,
    discard_on: DiscardOn | None = ...,
) -> T: ...


@overload
def per_loop(
    factory: None = ..., *, close: None = ..., discard_on: DiscardOn | None = ...
) -> Callable[[Callable[[], T]], T]: ...


@overload
def per_loop(
    factory: None = ..., *, close: Callable[[Any], object], discard_on: DiscardOn | None = ...
) -> Callable[[Callable[[], T]], T]: ...


def per_loop(
    factory: Callable[[], T] | None = None,
    *,
    close: Callable[[T], object] | None = None,
    discard_on: DiscardOn | None = None,
) -> T | Callable[[Callable[[], T]], T]:
    """A proxy that gives each running event loop its own instance from ``factory``.

    Bare decorator (``@per_loop``), with arguments (``@per_loop(close=...)``) or a call
    (``client = per_loop(make_client)``). Methods are awaited through the proxy
    (``await client.get("k")``). The instance is created on the first use inside a loop and
    closed inside that loop at its shutdown (``asyncio.run`` does it): ``close(obj)`` if given
    (awaited if it returns an awaitable), else ``await obj.aclose()``, else ``obj.close()``.
    A factory that is ``async def`` or returns an awaitable (``asyncpg.connect``,
    ``asyncpg.create_pool``; ``redis.asyncio.Redis`` too, whose await initialises it) is
    awaited in the loop that will use the instance. A call made before its loop runs
    (``asyncio.run(client.get("k"))``) takes that loop's instance when awaited. With no running
    loop, a block or a special method: ``NoRunningLoopError``.
    """

    def make(factory: Callable[[], T]) -> T:
        return make_proxy(PerLoopPolicy(factory, close=close, discard_on=discard_on))

    return proxy_or_decorator(factory, make)


__all__ = ["per_loop", "PerLoopPolicy"]
