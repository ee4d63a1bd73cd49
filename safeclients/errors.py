"""Every error safeclients raises, under one base.

None of them derives from ``AttributeError``: a proxy forwards attribute access, and an
``AttributeError`` raised from inside the proxy's machinery would turn into "no such attribute"
inside ``getattr``/``hasattr`` and hide the real problem (wrapt's ``WrapperNotInitializedError``
derives from ``ValueError`` for the same reason).
"""

from __future__ import annotations


class SafeClientsError(Exception):
    """Base of every error raised by safeclients itself (never by the wrapped client)."""


class FactoryError(SafeClientsError, TypeError):
    """The factory is not callable, or it returned ``None`` instead of a client."""


class PoolTimeout(SafeClientsError):
    """No instance became free within the pool's timeout."""

    def __init__(self, size: int, timeout: float, waited: float) -> None:
        super().__init__(
            f"no client became free within {timeout:g} s (waited {waited:.3f} s): all {size} "
            f"instances of the pool are in use; raise size= or timeout=, or hold instances "
            f"for shorter blocks"
        )
        self.size = size
        self.timeout = timeout
        self.waited = waited


class PoolClosed(SafeClientsError):
    """The proxy was used after ``dispose(proxy, final=True)`` or after interpreter shutdown."""


class ConcurrentUseError(SafeClientsError):
    """Two threads were inside the same client instance at the same time."""


class ForkedUseError(SafeClientsError):
    """A client instance created in one process was used in another (after a fork)."""


__all__ = [
    "SafeClientsError",
    "FactoryError",
    "PoolTimeout",
    "PoolClosed",
    "ConcurrentUseError",
    "ForkedUseError",
]
