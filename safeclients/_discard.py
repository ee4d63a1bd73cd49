"""What counts as a broken instance: the ``discard_on`` option, normalised into one predicate.

A call that raises an error ``is_broken`` accepts closes (discards) its instance instead of
giving it back; the policy then makes a new one. ``is_broken(exc, obj)`` is asked with the
instance the call ran on, so that the default (the client profile's ``disconnect``
judgement, ``_disconnect``) can read the connection's state, as SQLAlchemy's
``is_disconnect(e, connection, cursor)`` does; a user's ``discard_on`` predicate takes the
exception only. Which thread runs what: the predicate runs in the request thread whose call
raised, or where a derived object's use ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("safeclients")

DiscardOn = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
#: The normalised predicate: ``is_broken(exc, obj)``, ``obj`` the instance the call ran on (or
#: None where the caller has none).
IsBroken = Callable[[BaseException, Any], bool]

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
    """The default ``discard_on`` of a client with no ``disconnect`` judgement in its profile:
    OSError (and subclasses) or a connection-error-named class."""
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


def discard_predicate(discard_on: DiscardOn | None, default: IsBroken) -> IsBroken:
    """Normalise ``discard_on`` into the predicate the compiled paths call on an error.

    ``discard_on`` is an exception class, a tuple of them, a predicate of the exception, or
    None for ``default`` (the policy's: the profile's judgement, which also reads ``obj``).
    Whatever it is, an exception that is not an ``Exception`` (``KeyboardInterrupt``,
    ``SystemExit``, a greenlet kill) always discards: it cut a call off between request and
    reply, so the instance's stream may hold a reply nobody read. A predicate that raises is
    logged and counts as "broken": the instance is discarded, never leaked, and the caller gets
    its original exception.
    """
    if discard_on is None:
        test: IsBroken = default
    else:
        classes = _exception_classes(discard_on)
        if classes is not None:

            def test(exc: BaseException, obj: Any) -> bool:
                return isinstance(exc, classes)

        elif callable(discard_on):
            predicate: Callable[[BaseException], bool] = discard_on  # type: ignore[assignment]

            def test(exc: BaseException, obj: Any) -> bool:
                return predicate(exc)

        else:
            raise TypeError(
                "discard_on must be an exception class, a tuple of them, or a predicate, got "
                f"{discard_on!r}"
            )

    def is_broken(exc: BaseException, obj: Any) -> bool:
        if not isinstance(exc, Exception):
            return True
        try:
            return bool(test(exc, obj))
        except Exception:
            log.warning(
                "safeclients: the discard_on predicate raised on %s; the instance is discarded",
                type(exc).__name__,
                exc_info=True,
            )
            return True

    return is_broken


__all__ = ["DiscardOn", "IsBroken", "default_discard", "discard_predicate"]
