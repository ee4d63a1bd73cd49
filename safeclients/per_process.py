"""``per_process``: one instance per process, shared by its threads without a lock.

For clients that are thread-safe but not fork-safe: a gRPC channel (gRPC's documentation: a
channel is safe to share between threads, but must not be used across ``fork()`` unless it was
created after it), an ``httpx.Client``, redis-py's ``Redis`` (its connection pool is thread-safe,
and resets itself only when it notices the pid changed). Module-global, created at import in a
master that then forks, such a client is shared by every worker; ``per_process`` creates it
lazily in each process instead, and never serializes calls.

Across a fork: ``after_fork`` drops the inherited instance without closing it (the parent still
uses it); the child's first use creates its own. Detected without at-fork hooks (``_fork``), so
it holds under uWSGI's C fork too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar, overload

from safeclients._discard import DiscardOn
from safeclients._factory import proxy_or_decorator
from safeclients._policy import Policy
from safeclients._proxy import make_proxy
from safeclients._use import Use

T = TypeVar("T")


class PerProcessPolicy(Policy[T]):
    kind = "per_process"

    USE = Use(
        get="""
            obj = policy.instance
            if obj is None:
                obj = policy.create_once()
            token = None
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
        super().__init__(factory, close=close, discard_on=discard_on)
        self._reset()

    def _reset(self) -> None:
        # Guards the creation and replacement of `instance`; calls never take it.
        self._create_lock = threading.Lock()
        self.instance: T | None = None

    def create_once(self) -> T:
        """Slow path: the first use in this process (or after dispose or discard)."""
        with self._create_lock:
            obj = self.instance
            if obj is None:
                obj = self.instance = self.create()
            return obj

    def discard(self, obj: T) -> None:
        """A call raised one of discard_on: replace the instance (other threads may still be
        inside a call on it: it is closed anyway, as a broken connection cannot serve them)."""
        with self._create_lock:
            if self.instance is not obj:
                return
            self.instance = None
        self.close_instance(obj, discarded=True)

    def prime(self) -> None:
        if self.instance is None:
            self.create_once()

    def existing(self) -> T | None:
        return self.instance

    def live(self) -> int:
        return 0 if self.instance is None else 1

    def dispose(self, final: bool) -> None:
        with self._create_lock:
            if final:
                self._final = True
            obj, self.instance = self.instance, None
        if obj is not None:
            self.close_instance(obj, discarded=False)


@overload
def per_process(
    factory: Callable[[], T],
    *,
    close: Callable[[T], object] | None = ...,
    discard_on: DiscardOn | None = ...,
) -> T: ...


@overload
def per_process(
    factory: None = ...,
    *,
    close: Callable[[Any], object] | None = ...,
    discard_on: DiscardOn | None = ...,
) -> Callable[[Callable[[], T]], T]: ...


def per_process(
    factory: Callable[[], T] | None = None,
    *,
    close: Callable[[T], object] | None = None,
    discard_on: DiscardOn | None = None,
) -> T | Callable[[Callable[[], T]], T]:
    """A proxy over one instance per process, created on first use, shared by the process's
    threads without a lock: for thread-safe clients that are not fork-safe (gRPC channels).

    Usable as a bare decorator, with arguments, or as a call. A call raising one of
    ``discard_on`` replaces the instance.
    """

    def make(factory: Callable[[], T]) -> T:
        return make_proxy(PerProcessPolicy(factory, close=close, discard_on=discard_on))

    return proxy_or_decorator(factory, make)
