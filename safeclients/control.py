"""Module-level control of proxies: a proxy never grows attributes that could shadow the client's.

Also the interpreter-exit hook: every proxy is disposed with ``final=True`` (closing the instances
this process created); a daemon thread still using one afterwards gets ``PoolClosed``.
"""

from __future__ import annotations

import atexit
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Generic, TypeVar

from safeclients import _fork
from safeclients._policy import Policy
from safeclients._proxy import Proxy, policy_of
from safeclients.stats import Stats

T = TypeVar("T")


def is_proxy(obj: object) -> bool:
    """Whether ``obj`` is a safeclients proxy (``type()``, not the ``__class__`` it reports)."""
    return issubclass(type(obj), Proxy)


class _Checkout(Generic[T]):
    """The context manager ``checkout`` returns: a class, not a generator, to keep it cheap."""

    __slots__ = ("_policy", "_obj")

    def __init__(self, policy: Policy[T]) -> None:
        self._policy = policy
        self._obj: T | None = None

    def __enter__(self) -> T:
        obj = self._obj = self._policy.enter()
        return obj

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        obj, self._obj = self._obj, None
        if obj is None:
            return
        self._policy.leave(obj, exc is not None and self._policy.is_broken(exc))


def checkout(proxy: T) -> AbstractContextManager[T]:
    """Hold one raw client for a block: ``with safeclients.checkout(proxy) as client: ...``.

    ``locked``: the lock is held for the block. ``pooled``: the instance is checked out for the
    block (an exception from ``discard_on`` discards it). ``per_thread``: this thread's instance.
    ``guarded``: the block counts as one use. Do not keep the client after the block.
    """
    policy: Policy[T] = policy_of(proxy)
    return _Checkout(policy)


def dispose(proxy: object, *, final: bool = False) -> None:
    """Close every instance the proxy holds, in every thread (created in this process).

    The proxy stays usable and creates fresh instances, unless ``final=True``: then any later use
    raises ``PoolClosed``. A ``locked`` or ``guarded`` proxy around an existing instance (no
    factory) keeps it unless ``final=True``, as nothing could recreate it.
    """
    policy = policy_of(proxy)
    _fork.check()
    policy.dispose(final)


def stats(proxy: object) -> Stats:
    """A snapshot of the proxy's counters in this process (see ``safeclients.stats.Stats``)."""
    policy = policy_of(proxy)
    _fork.check()
    return policy.stats()


def policy_name(proxy: object) -> str:
    """``"per_thread"``, ``"locked"``, ``"pooled"`` or ``"guarded"``."""
    return policy_of(proxy).kind


def _dispose_all_at_exit() -> None:
    """Interpreter exit, in the main thread: close what this process created."""
    _fork.check()
    for policy in _fork.live_policies():
        if isinstance(policy, Policy):
            policy.shutdown()


atexit.register(_dispose_all_at_exit)
