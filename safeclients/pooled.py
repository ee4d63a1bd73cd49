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

Across a fork: ``after_fork`` drops the free list and the counts without closing anything and
replaces the condition; the child creates its own instances on demand.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, overload

from safeclients._limits import DEFAULT_SIZE, DEFAULT_TIMEOUT, validate_size, validate_timeout
from safeclients._policy import DiscardOn, Policy
from safeclients._proxy import make_proxy
from safeclients._use import Use
from safeclients.errors import PoolTimeout

T = TypeVar("T")


def validate_limits(size: object, timeout: object) -> None:
    """Refuse a pool that could never hand out an instance, or a wait that cannot work."""
    validate_size("pooled", size)
    validate_timeout("pooled", timeout)


class PooledPolicy(Policy[T]):
    kind = "pooled"

    USE = Use(
        get="""
            token = policy.free
            try:
                obj = token.pop()
            except IndexError:
                obj, token = policy.acquire_slow()
        """,
        put_ok="""
            if token is policy.free:
                token.append(obj)
                if policy.waiting:
                    policy.wake()
            else:
                policy.release_slow(obj, token, False)
        """,
        put_broken="policy.release_slow(obj, token, True)",
    )

    def __init__(
        self,
        factory: Callable[[], T],
        *,
        size: int = DEFAULT_SIZE,
        timeout: float | None = DEFAULT_TIMEOUT,
        close: Callable[[T], object] | None = None,
        discard_on: DiscardOn | None = None,
    ) -> None:
        self.size = validate_size("pooled", size)
        self.timeout = validate_timeout("pooled", timeout)
        super().__init__(factory, close=close, discard_on=discard_on)
        self._reset()

    def _reset(self) -> None:
        # Guards _count, waiting and _live; waiters wait on it for a free instance or slot.
        self._cond = threading.Condition(threading.Lock())
        # Idle instances of the current generation, most recently returned last (LIFO).
        self.free: list[T] = []
        # Instances of the current generation that exist (idle, in use, or being created).
        self._count = 0
        # Threads in the slow path; a releaser notifies only when this is non-zero.
        self.waiting = 0
        # Every instance this process created and has not closed, for live().
        self._live = 0

    # -- slow paths ----------------------------------------------------------------------------

    def acquire_slow(self) -> tuple[T, list[T]]:
        """Nothing was free: create within ``size``, or wait up to ``timeout``. Returns the
        instance and the free list it must go back to."""
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
            self.count_wait(waited)
            if timed_out:
                raise PoolTimeout(
                    self.size, self.timeout or 0.0, waited, same_context=self.held_elsewhere()
                )
        if self._final and obj is None and not reserved:
            raise self.closed_error()
        if not reserved:
            assert obj is not None
            return obj, free
        return self._create_in_slot(free), free

    def _create_in_slot(self, free: list[T]) -> T:
        """A slot of generation ``free`` is reserved: fill it, or give it back on failure."""
        try:
            obj = self.create()
        except BaseException:
            self._give_back_slot(free)
            raise
        with self._cond:
            self._live += 1
        return obj

    def _give_back_slot(self, free: list[T]) -> None:
        with self._cond:
            if free is self.free:
                self._count -= 1
            self._cond.notify()

    def wake(self) -> None:
        """A releaser saw waiters: wake one (it re-checks the free list itself)."""
        with self._cond:
            self._cond.notify()

    def release_slow(self, obj: T, free: list[T], broken: bool) -> None:
        """Broken instance, disposed generation, or final dispose: close instead of returning."""
        if not broken and free is self.free and not self._final:
            free.append(obj)
            if self.waiting:
                self.wake()
            return
        with self._cond:
            self._live -= 1
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

    def dispose(self, final: bool) -> None:
        with self._cond:
            if final:
                self._final = True
            old, self.free = self.free, []
            self._count = 0
            self._live -= len(old)
            self._cond.notify_all()
        while old:
            self.close_instance(old.pop(), discarded=False)

    def green_reset(self) -> None:
        # gevent just patched threading (see _green): a waiter must yield to the hub, not
        # block the OS thread every greenlet runs on. No call is in flight at patch time.
        self._cond = threading.Condition(threading.Lock())

    def after_fork(self) -> None:
        self._reset()
        self._reset_common()


@overload
def pooled(
    factory: Callable[[], T],
    *,
    size: int = ...,
    timeout: float | None = ...,
    close: Callable[[T], object] | None = ...,
    discard_on: DiscardOn | None = ...,
) -> T: ...


@overload
def pooled(
    factory: None = ...,
    *,
    size: int = ...,
    timeout: float | None = ...,
    close: None = ...,
    discard_on: DiscardOn | None = ...,
) -> Callable[[Callable[[], T]], T]: ...


@overload
def pooled(
    factory: None = ...,
    *,
    size: int = ...,
    timeout: float | None = ...,
    close: Callable[[Any], object],  # the client type is not known yet here
    discard_on: DiscardOn | None = ...,
) -> Callable[[Callable[[], T]], T]: ...


def pooled(
    factory: Callable[[], T] | None = None,
    *,
    size: int = DEFAULT_SIZE,
    timeout: float | None = DEFAULT_TIMEOUT,
    close: Callable[[T], object] | None = None,
    discard_on: DiscardOn | None = None,
) -> T | Callable[[Callable[[], T]], T]:
    """A proxy over a bounded pool of up to ``size`` instances from ``factory``.

    A plain method call checks an instance out for that call only; ``safeclients.checkout``
    holds one for a block. With none free within ``timeout`` seconds, ``PoolTimeout``. A call
    raising one of ``discard_on`` (default: OSError or a ConnectionError-like class) closes its
    instance, which is never handed out again. ``timeout=None`` waits without limit. A size
    that is not an int >= 1, or a timeout that is negative, nan or infinite: ValueError now.
    """
    if factory is None:

        def decorate(factory: Callable[[], T]) -> T:
            return pooled(factory, size=size, timeout=timeout, close=close, discard_on=discard_on)

        validate_limits(size, timeout)
        return decorate
    policy = PooledPolicy(factory, size=size, timeout=timeout, close=close, discard_on=discard_on)
    proxy: T = make_proxy(policy, "pooled")  # type: ignore[assignment]
    return proxy
