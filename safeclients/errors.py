"""Every error safeclients raises, under one base.

None of them derives from ``AttributeError``: a proxy forwards attribute access, and an
``AttributeError`` raised from inside the proxy's machinery would turn into "no such attribute"
inside ``getattr``/``hasattr`` and hide the real problem (wrapt's ``WrapperNotInitializedError``
derives from ``ValueError`` for the same reason).
"""

from __future__ import annotations

from typing import Any


class SafeClientsError(Exception):
    """Base of every error raised by safeclients itself (never by the wrapped client)."""


class FactoryError(SafeClientsError, TypeError):
    """The factory is not callable, or it returned ``None`` instead of a client."""


class PoolTimeout(SafeClientsError):
    """No instance became free within the pool's timeout."""

    def __init__(self, size: int, timeout: float, waited: float, *, same_context: bool = False):
        message = (
            f"no client became free within {timeout:g} s (waited {waited:.3f} s): all {size} "
            f"instances of the pool are in use; raise size= or timeout=, or hold instances "
            f"for shorter blocks"
        )
        if same_context:
            message += (
                f" (this thread already holds one of the {size} in an open block: a nested use "
                f"of the proxy inside `with checkout(proxy)` or `with proxy:` waits for itself)"
            )
        super().__init__(message)
        self.size = size
        self.timeout = timeout
        self.waited = waited
        self.same_context = same_context

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable (a worker process reports it to its parent): rebuild from the numbers, then
        # restore the instance dict as BaseException's own pickling does: the notes
        # (add_note() keeps them in __notes__) and any attribute a caller set on the way up.
        return (
            _rebuild_pool_timeout,
            (type(self), self.size, self.timeout, self.waited, self.same_context),
            dict(vars(self)),
        )


def _rebuild_pool_timeout(
    cls: type[PoolTimeout], size: int, timeout: float, waited: float, same_context: bool
) -> PoolTimeout:
    if issubclass(cls, LockTimeout):
        return cls(timeout, waited)
    return cls(size, timeout, waited, same_context=same_context)


class LockTimeout(PoolTimeout):
    """A ``locked`` proxy's lock was not free within its timeout (a pool of one instance)."""

    def __init__(self, timeout: float, waited: float) -> None:
        SafeClientsError.__init__(
            self,
            f"the lock of a locked proxy was not free within {timeout:g} s (waited "
            f"{waited:.3f} s): another thread is inside a call on its one instance; raise "
            f"timeout= (None waits without limit), or use pooled() for concurrent calls",
        )
        self.size = 1
        self.timeout = timeout
        self.waited = waited
        self.same_context = False


class CheckoutReused(SafeClientsError, RuntimeError):
    """A ``checkout()`` object was entered a second time (or from two threads): each
    ``with safeclients.checkout(proxy)`` needs its own call to ``checkout``."""


class AsyncUseError(SafeClientsError, TypeError):
    """An awaitable came back through a policy that cannot hold its instance across an
    ``await`` (``locked``): use ``per_loop`` or ``pooled`` for an async client."""


class DerivedUseError(SafeClientsError):
    """An object derived from a client (cursor, channel, pipeline, generator) was used where
    the policy cannot keep that use safe."""


class CrossThreadUseError(DerivedUseError):
    """A derived object was used from another thread than the one holding its instance."""


class OutlivedUseError(DerivedUseError):
    """A derived object was used after its use ended (its ``with`` block, or ``close()``): its
    instance is back with the policy, and may be another thread's now."""


class InstanceDiscardedError(SafeClientsError):
    """A use inside a block (``with proxy:``, ``checkout()``) or under a derived object (a
    cursor) came after the instance that block holds was discarded for a dead connection:
    continuing on a new connection would run the rest of its transaction without the start.
    Leave the block (close the cursor) and start the work again."""


class SharedStateError(SafeClientsError, TypeError):
    """An attribute was set (or deleted) on a proxy whose instances it cannot reach together
    (``pooled``, outside a block): it would change one instance, chosen at random. Configure
    the factory, or set it inside ``with safeclients.checkout(proxy) as client:``."""


class PoolClosed(SafeClientsError):
    """The proxy was used after ``dispose(proxy, final=True)`` or after interpreter shutdown."""


class ConcurrentUseError(SafeClientsError):
    """Two threads were inside the same client instance at the same time."""


class NoRunningLoopError(SafeClientsError, RuntimeError):
    """A ``per_loop`` proxy was used with no event loop running in the calling thread."""


class WouldBlockLoopError(SafeClientsError, RuntimeError):
    """A sync use of a proxy would have to wait (every ``pooled`` instance is in use) in a
    thread whose event loop is running: waiting there would freeze every task of the loop.
    ``await`` the call, or use ``async with safeclients.checkout(proxy)``."""


class ForkedUseError(SafeClientsError):
    """A client instance created in one process was used in another (after a fork)."""


__all__ = [
    "SafeClientsError",
    "FactoryError",
    "PoolTimeout",
    "LockTimeout",
    "CheckoutReused",
    "PoolClosed",
    "AsyncUseError",
    "DerivedUseError",
    "CrossThreadUseError",
    "OutlivedUseError",
    "InstanceDiscardedError",
    "SharedStateError",
    "ConcurrentUseError",
    "ForkedUseError",
    "NoRunningLoopError",
    "WouldBlockLoopError",
]
