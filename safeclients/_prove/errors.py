"""What can go wrong when proving an app, named. All under ``SafeClientsError``.

``UnsafeUseFound`` and ``HammerCallsFailed`` are also ``AssertionError``: raised by ``hammer`` in a
test, they fail it (pytest shows the message) rather than erroring it.
"""

from __future__ import annotations

from safeclients.errors import SafeClientsError

__all__ = [
    "ProveError",
    "ProvingGroundNotStarted",
    "UnsafeUseFound",
    "HammerCallsFailed",
    "HammerTimeout",
    "NothingWatched",
]


class ProveError(SafeClientsError):
    """The proving ground could not do what was asked (the message says what and why)."""


class ProvingGroundNotStarted(ProveError):
    """The app could not be run: its import raised or exited, the server could not bind, or its
    workers died before they were ready. The message says why; ``log`` is everything the server
    and the app wrote (a traceback, the server's refusal)."""

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.log = log

    def __reduce__(self) -> tuple[type[ProvingGroundNotStarted], tuple[str, str]]:
        return (type(self), (str(self), self.log))


class UnsafeUseFound(ProveError, AssertionError):
    """``hammer`` saw a client used by two threads at once or in two processes."""


class HammerCallsFailed(ProveError, AssertionError):
    """Calls made by ``hammer`` raised; nothing unsafe was seen, but the calls did not work."""


class HammerTimeout(ProveError, AssertionError):
    """A thread or the forked child of ``hammer`` did not finish within its timeout."""


class NothingWatched(ProveError, ValueError):
    """``hammer`` found no client to watch (and no safeclients proxy): it could never fail."""
