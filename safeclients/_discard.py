"""What counts as a broken instance: the ``discard_on`` option, normalised into one predicate.

A call that raises an error ``is_broken`` accepts closes (discards) its instance instead of
giving it back; the policy then makes a new one. Which thread runs what: the predicate runs in
the request thread whose call raised, or where a derived object's use ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger("safeclients")

DiscardOn = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]

# Exception class names (anywhere in the MRO) that mean "this connection is unusable": the
# clients we target raise their own classes rather than OSError, e.g. pygearman's
# gearman.errors.ConnectionError / ServerUnavailable / ProtocolError (a desynchronised stream),
# redis-py's and pymemcache's ConnectionError-named classes, and PEP 249's InterfaceError and
# OperationalError, which every DB-API driver raises for a dead or lost connection.
_BROKEN_NAME_PARTS = (
    "ConnectionError",
    "ServerUnavailable",
    "ProtocolError",
    "InterfaceError",
    "OperationalError",
)


def default_discard(exc: BaseException) -> bool:
    """The default ``discard_on``: OSError (and subclasses) or a connection-error-named class."""
    if isinstance(exc, OSError):
        return True
    return any(part in klass.__name__ for klass in type(exc).__mro__ for part in _BROKEN_NAME_PARTS)


def _exception_classes(discard_on: object) -> tuple[type[BaseException], ...] | None:
    """``discard_on`` as a tuple of exception classes, or None if it is not one or a tuple."""
    if isinstance(discard_on, type) and issubclass(discard_on, BaseException):
        return (discard_on,)
    if isinstance(discard_on, tuple):
        for klass in discard_on:
            if not (isinstance(klass, type) and issubclass(klass, BaseException)):
                raise TypeError(f"discard_on must hold exception classes, got {klass!r}")
        return discard_on
    return None


def discard_predicate(discard_on: DiscardOn | None) -> Callable[[BaseException], bool]:
    """Normalise ``discard_on`` into the predicate the compiled paths call on an error.

    ``discard_on`` is an exception class, a tuple of them, a predicate, or None for the default.
    Whatever it is, an exception that is not an ``Exception`` (``KeyboardInterrupt``,
    ``SystemExit``, a greenlet kill) always discards: it cut a call off between request and
    reply, so the instance's stream may hold a reply nobody read. A predicate that raises is
    logged and counts as "broken": the instance is discarded, never leaked, and the caller gets
    its original exception.
    """
    if discard_on is None:
        test: Callable[[BaseException], bool] = default_discard
    else:
        classes = _exception_classes(discard_on)
        if classes is not None:

            def test(exc: BaseException) -> bool:
                return isinstance(exc, classes)

        elif callable(discard_on):
            test = discard_on  # type: ignore[assignment]  # a class was matched above
        else:
            raise TypeError(
                "discard_on must be an exception class, a tuple of them, or a predicate, got "
                f"{discard_on!r}"
            )

    def is_broken(exc: BaseException) -> bool:
        if not isinstance(exc, Exception):
            return True
        try:
            return bool(test(exc))
        except Exception:
            log.warning(
                "safeclients: the discard_on predicate raised on %s; the instance is discarded",
                type(exc).__name__,
                exc_info=True,
            )
            return True

    return is_broken


__all__ = ["DiscardOn", "default_discard", "discard_predicate"]
