"""``per_thread``: each thread lazily gets its own instance; it is closed when the thread ends.

Thread exit: next to its instance, each thread's ``threading.local`` entry holds a small
``_ThreadSlot``. The policy keeps ``weakref.ref(slot, callback) -> instance``. When the thread
ends, CPython clears its thread-local entries, the slot dies, and the callback (running in the
exiting thread) removes the record and closes the instance: no wait for the proxy to be garbage
collected, and no record left per dead thread, however many threads come and go.

Under gevent: "per thread" means per greenlet (``threading.local`` is greenlet-local once
``threading`` is patched, and ``_green`` renews a proxy made before the patch), so a server that
runs each request in its own greenlet gets one instance per request, closed when the greenlet
ends and never reused. That is correct but costly; the first time it happens, each process logs
one warning naming the factory and pointing at ``pooled``, which bounds instances per worker.

Across a fork: ``after_fork`` swaps in a fresh ``threading.local``, record table and locks, and
closes nothing. Callbacks of inherited slots (``os.fork()`` clears the other threads' locals in
the child) find no record in the new table, and close only instances created in their own process
in any case, so the child never closes the parent's connections.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar, overload

from safeclients import _green, _uses
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
from safeclients._policy import Policy, log
from safeclients._proxy import make_proxy
from safeclients._use import Use

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


# The use of a thread's instance (see _use): this thread's, or a new one; nothing to give back.
_GET = """\
local = policy._local
try:
    obj = local.obj
except AttributeError:
    obj = policy.create_for_thread()
"""
_PUT_BROKEN = "policy.discard(obj)"


class PerThreadPolicy(Policy[T]):
    kind = "per_thread"
    track_holds = True  # vetted_own never retires an instance under an open cursor or block
    tasks_share = True  # an instance per thread, not per task: check mode keys by thread

    USE = Use(get=_GET + "token = None\n", put_ok="", put_broken=_PUT_BROKEN)

    # With check=/max_lifetime=/max_idle= (or a profile's check): vet the thread's instance when its
    # next check is due (at most once per check_interval), not on every call.
    USE_HEALTH = Use(
        get=_GET
        + """\
else:
    if local.due <= monotonic():
        obj = policy.vetted_own(obj)
token = None
""",
        put_ok="",
        put_broken=_PUT_BROKEN,
    )

    # With max_idle= too: each use that ends notes its time (``Ages.used``, by identity, so a
    # hold released in another thread counts); a thread's instance idle for max_idle seconds
    # or more is vetted, hence replaced, at its next use (never under an open hold: vetted_own).
    USE_IDLE = Use(
        get=_GET
        + """\
else:
    if local.due <= monotonic() or policy.ages.idle(obj) >= policy.health.max_idle:
        obj = policy.vetted_own(obj)
token = None
""",
        put_ok="policy.ages.used(obj)",
        put_broken=_PUT_BROKEN,
    )

    def use_for(self, *, health: bool) -> Use:
        if health and self.health.max_idle is not None:
            return self.USE_IDLE
        return super().use_for(health=health)

    def __init__(
        self,
        factory: Callable[[], T],
        *,
        close: Callable[[T], object] | None = None,
        discard_on: DiscardOn | None = None,
        health: Health = NO_HEALTH,
    ) -> None:
        self.health = health
        self.ages = Ages()
        super().__init__(factory, close=close, discard_on=discard_on)

    def renew(self, *, drop: bool) -> None:
        if not drop:
            self._green_renew()
            return
        self.ages.clear()
        # Order matters in a fork child: dropping the old local (last) fires the callbacks of its
        # slots, which must find the new lock and the new (empty) table.
        # Guards _records and _retired_locals. Re-entrant: dropping a local inside the lock can
        # run a callback that takes it again in the same thread.
        self._records_lock = threading.RLock()
        # weakref to a live thread's slot -> that thread's instance (every instance not closed).
        self._records: dict[_SlotRef, T] = {}
        # Thread ident -> the instance its thread is closing right now: a close callback that
        # uses the proxy gets that instance back instead of a new one nobody would close.
        self._closing: dict[int, T] = {}
        # Locals replaced by dispose() whose threads have not come back yet: each thread closes
        # its old instance itself, at its next use or its exit (see dispose).
        self._retired_locals: list[threading.local] = []
        # Per thread: `obj` (the instance) and `slot` (its _ThreadSlot).
        self._local = threading.local()
        # Whether this process logged that it runs under gevent, one greenlet per request.
        self._told_green = False

    def _close_own(self, obj: T, *, discarded: bool) -> None:
        """Close the calling thread's instance, in that thread; uses meanwhile get it back."""
        me = threading.get_ident()
        self._closing[me] = obj
        try:
            self.close_instance(obj, discarded=discarded)
        finally:
            self._closing.pop(me, None)

    def _thread_ended(self, ref: _SlotRef) -> None:
        """Weakref callback, in the exiting thread (or wherever the local is freed)."""
        if ref.pid != os.getpid():
            return
        with self._records_lock:
            obj = self._records.pop(ref, None)
        if obj is not None:
            self.ages.forget(obj)
            try:
                self._close_own(obj, discarded=False)
            except BaseException:  # a callback cannot raise anywhere useful: log, do not print
                log.warning(
                    "safeclients: closing a per_thread instance at thread exit was "
                    "interrupted; the instance is dropped"
                )

    def _drop_own(self, local: threading.local, *, discarded: bool) -> None:
        """Forget and close the calling thread's instance in ``local`` (if it has one)."""
        obj = getattr(local, "obj", None)
        if obj is None:
            return
        slot = local.slot
        del local.obj, local.slot
        with self._records_lock:
            record = self._records.pop(weakref.ref(slot), None)  # type: ignore[call-overload]
        del slot
        if record is not None:
            self.ages.forget(record)
            self._close_own(record, discarded=discarded)

    def _close_retired(self) -> None:
        """This thread's first use since a dispose: close its instance from before, here."""
        for old in list(self._retired_locals):
            self._drop_own(old, discarded=False)
        with self._records_lock:
            if not self._records:
                self._retired_locals.clear()

    def create_for_thread(self) -> T:
        """Slow path: the calling thread's first use (or first after dispose or discard).
        Refuses (``InstanceDiscardedError``) inside a block whose instance was discarded."""
        _uses.refuse_lost(self)
        closing = self._closing.get(threading.get_ident())
        if closing is not None:
            return closing
        if self._retired_locals:
            self._close_retired()
        if not self._told_green and _green.in_request_greenlet():
            self._tell_green()
        obj = self.create()
        slot = _ThreadSlot()
        ref = _SlotRef(slot, self._thread_ended)
        ref.pid = os.getpid()
        with self._records_lock:
            self._records[ref] = obj
        local = self._local
        local.obj = obj
        local.slot = slot
        self.ages.born(obj)
        local.due = self._next_due()
        return obj

    def _next_due(self) -> float:
        """When the calling thread's instance is next vetted (health variant only)."""
        health = self.health
        steps = [health.max_lifetime] if health.max_lifetime is not None else []
        if self.effective_check is not None:
            steps.append(health.check_interval)
        return time.monotonic() + min(steps) if steps else float("inf")

    def vetted_own(self, obj: T) -> T:
        """Health variant: the calling thread's instance is due; replace it if needed. Never
        under an open use (a cursor, a block: ``_uses``): the commit would land on a new
        connection. It is vetted again at the next call after that use ends."""
        if _uses.held_now(self, obj):
            return obj
        try:
            reason = self.ages.verdict(self.health, self.effective_check, obj)
        except CheckPending as pending:
            raise async_check_refused(self.kind, pending) from None
        if not reason:
            self._local.due = self._next_due()
            return obj
        retire_note(self.kind, obj, reason)
        self._drop_own(self._local, discarded=True)
        return self.create_for_thread()

    def _tell_green(self) -> None:
        """Once per process: under gevent a per_thread proxy opens one instance per request."""
        self._told_green = True
        factory = self._factory
        name = f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', factory)}"
        log.warning(
            "safeclients: the per_thread proxy made from %s runs under gevent, where each "
            "request is its own greenlet: it creates one instance per greenlet (a new connection "
            "per request, closed when the greenlet ends, never reused); use safeclients.pooled "
            "(%s) instead, which bounds the instances per worker",
            name,
            f"@safeclients.pooled(size=N) on {getattr(factory, '__qualname__', 'the factory')}",
        )

    def _green_renew(self) -> None:
        # gevent just patched threading (see _green): an OS threading.local made before would
        # be shared by every greenlet. Under gevent "per thread" means per greenlet. Runs where
        # patch_all() runs, before requests: the calling thread's instance is closed now.
        self._drop_own(self._local, discarded=False)
        with self._records_lock:
            if self._records:
                self._retired_locals.append(self._local)
            self._local = threading.local()
        self._records_lock = threading.RLock()

    def discard(self, obj: T) -> None:
        """The calling thread's instance raised one of discard_on: close it, forget it (and
        lose the context's pin on it: ``_uses``)."""
        _uses.lose_pinned(self, obj)
        if getattr(self._local, "obj", None) is obj:
            self._drop_own(self._local, discarded=True)

    def on_lost(self, obj: T) -> None:
        self.discard(obj)

    def retire_from_loop(self, obj: T) -> bool:
        """The loop this thread's async client is bound to ends or is gone (in this thread):
        the thread's next loop gets a new instance."""
        if getattr(self._local, "obj", None) is not obj:
            return False
        self._drop_own(self._local, discarded=False)
        return True

    def inherited(self) -> list[T]:
        # Every thread's instance not closed (the other threads are gone in the child).
        return list(self._records.values())

    def prime(self) -> None:
        if getattr(self._local, "obj", None) is None:
            self.create_for_thread()

    def existing(self) -> T | None:
        return getattr(self._local, "obj", None)

    def live(self) -> int:
        with self._records_lock:
            return len(self._records)

    def dispose(self, final: bool) -> None:
        """Close the calling thread's instance now, every other thread's in that thread.

        Another thread may be inside a call on its instance right now, and some clients may only
        be closed by the thread that made them (sqlite3): so each other thread closes its own
        instance at its next use of the proxy (then gets a fresh one, or ``PoolClosed`` after
        ``final=True``), or when it ends, whichever comes first. ``stats().live`` counts them
        until then.
        """
        if final:
            self._final = True
        self._drop_own(self._local, discarded=False)
        with self._records_lock:
            if self._records:
                self._retired_locals.append(self._local)
            self._local = threading.local()

    def shutdown(self) -> None:
        # Interpreter exit, main thread: the threads still alive are daemon threads, possibly
        # inside a call; their instances are left to the process exit (see dispose).
        self.dispose(True)


@overload
def per_thread(
    factory: Callable[[], T],
    *,
    close: Callable[[T], object] | None = ...,
    discard_on: DiscardOn | None = ...,
    check: Callable[[T], object] | None = ...,
    check_interval: float | None = ...,
    max_lifetime: float | None = ...,
    max_idle: float | None = ...,
) -> T: ...


@overload
def per_thread(
    factory: None = ...,
    *,
    close: Callable[[Any], object] | None = ...,  # the client type is not known yet here
    discard_on: DiscardOn | None = ...,
    check: Callable[[Any], object] | None = ...,
    check_interval: float | None = ...,
    max_lifetime: float | None = ...,
    max_idle: float | None = ...,
) -> Callable[[Callable[[], T]], T]: ...


def per_thread(
    factory: Callable[[], T] | None = None,
    *,
    close: Callable[[T], object] | None = None,
    discard_on: DiscardOn | None = None,
    check: Callable[[T], object] | None = None,
    check_interval: float | None = None,
    max_lifetime: float | None = None,
    max_idle: float | None = None,
) -> T | Callable[[Callable[[], T]], T]:
    """A proxy that gives each thread its own instance from ``factory``, created on first use.

    Bare decorator (``@per_thread``), with arguments (``@per_thread(close=...)``) or a call
    (``client = per_thread(make_client)``). When a thread ends, its instance is closed with
    ``close(obj)`` if given, else ``obj.close()`` if it has one. A call that raises one of
    ``discard_on`` (default: the client profile's judgement that the connection is dead, by
    error code, connection state or reply code; without one, OSError, a ConnectionError-like
    class, or a PEP 249 ``InterfaceError``/``OperationalError``) closes the calling thread's
    instance; its next call creates a fresh one. Setting an attribute (``proxy.timeout = 5``)
    sets it on the calling thread's instance only.

    Health: ``check(client)`` runs on a thread's instance at most once per ``check_interval``
    seconds, and replaces it if it raises or returns False (default: the client profile's
    check); ``max_lifetime`` (seconds) replaces older instances; ``max_idle`` (seconds)
    replaces a thread's instance that was not used for that long, at that thread's next use
    (a server's idle timeout has closed it meanwhile, or the app wants fewer idle connections;
    a thread that never comes back keeps its instance until it ends or ``dispose()``). None of
    them retires an instance under an open use of it (a cursor, a ``with`` block, a
    checkout): the rest of that use would run on another connection.
    """
    health = health_options(
        "per_thread",
        check=check,
        check_interval=check_interval,
        max_lifetime=max_lifetime,
        max_idle=max_idle,
    )

    def make(factory: Callable[[], T]) -> T:
        return make_proxy(
            PerThreadPolicy(factory, close=close, discard_on=discard_on, health=health)
        )

    return proxy_or_decorator(factory, make)
