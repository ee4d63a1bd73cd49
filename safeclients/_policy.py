"""The policy base: what every proxy delegates to, and the override surface of each policy.

A proxy (``_proxy.Proxy``) owns no state of its own beyond ``_self_policy``; a ``Policy`` holds the
factory, the instances, the locks and the counters. A policy overrides:

* ``acquire() -> obj``: an instance for the calling thread's next use (may block, may create);
* ``release(obj, broken)``: the use is over; ``broken`` means the call raised one of
  ``discard_on``, so the instance must be closed and never handed out again;
* ``dispose(final)``: close every instance the policy holds, in every thread;
* ``after_fork()``: in a fork child, drop inherited instances *without closing them* and replace
  every lock (see ``_fork`` for how a fork is detected);
* ``live()``: how many instances it holds;
* ``peek()``: the instance ``proxy.__wrapped__`` shows (pooled has none and says so);
* optionally ``shutdown()``: interpreter exit, default ``dispose(True)``;
* optionally ``forwarder(name)``: a fast class attribute for the client type's public method
  ``name``; the default forwards through the generic ``call``.

Which thread runs what: ``acquire``/``release``/``call`` run in request threads; ``dispose`` in
whichever thread calls ``safeclients.dispose`` (or the interpreter's exit); ``after_fork`` in the
fork child's first caller, with no other thread of the child inside the policy yet.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar, Union

from safeclients import _check, _fork
from safeclients._fork import ARMED
from safeclients.errors import FactoryError, PoolClosed
from safeclients.stats import Stats

T = TypeVar("T")

log = logging.getLogger("safeclients")

DiscardOn = Union[tuple[type[BaseException], ...], Callable[[BaseException], bool]]

# Exception class names (anywhere in the MRO) that mean "this connection is unusable": the
# clients we target raise their own classes rather than OSError, e.g. pygearman's
# gearman.errors.ConnectionError / ServerUnavailable / ProtocolError (a desynchronised stream),
# redis-py's and pymemcache's ConnectionError-named classes.
_BROKEN_NAME_PARTS = ("ConnectionError", "ServerUnavailable", "ProtocolError")


def default_discard(exc: BaseException) -> bool:
    """The default ``discard_on``: OSError (and subclasses) or a connection-error-named class."""
    if isinstance(exc, OSError):
        return True
    return any(
        part in klass.__name__ for klass in type(exc).__mro__ for part in _BROKEN_NAME_PARTS
    )


def discard_predicate(discard_on: DiscardOn | None) -> Callable[[BaseException], bool]:
    """Normalise ``discard_on`` (a tuple of classes, a predicate, or None for the default)."""
    if discard_on is None:
        return default_discard
    if isinstance(discard_on, tuple):
        classes = discard_on
        for klass in classes:
            if not (isinstance(klass, type) and issubclass(klass, BaseException)):
                raise TypeError(
                    f"discard_on must hold exception classes, got {klass!r}"
                )

        def is_broken(exc: BaseException) -> bool:
            return isinstance(exc, classes)

        return is_broken
    if callable(discard_on):
        return discard_on
    raise TypeError(
        f"discard_on must be a tuple of exception classes or a predicate, got {discard_on!r}"
    )


def check_factory(kind: str, factory: object) -> None:
    """Refuse a non-callable factory at proxy creation, with a sentence."""
    if not callable(factory):
        raise FactoryError(
            f"{kind}() needs a zero-argument callable that returns a client, got "
            f"{factory!r} ({type(factory).__name__})"
        )


class Policy(Generic[T]):
    """Base of the four policies; see the module docstring for the override surface."""

    kind: ClassVar[str] = "policy"

    def __init__(
        self,
        factory: Callable[[], T] | None,
        *,
        close: Callable[[T], object] | None = None,
        discard_on: DiscardOn | None = None,
    ) -> None:
        if factory is not None:
            check_factory(self.kind, factory)
        if close is not None and not callable(close):
            raise TypeError(f"close must be a callable taking the client, got {close!r}")
        self._factory = factory
        self._close_fn = close
        self.is_broken = discard_predicate(discard_on)
        self.client_type: type | None = factory if isinstance(factory, type) else None
        # Called once with the type of the first instance (the proxy installs fast forwarders).
        self.on_first_instance: Callable[[type], None] | None = None
        self.tracker: _check.Tracker | None = (
            _check.Tracker(self.kind) if _check.enabled() else None
        )
        self._final = False
        self._reset_common()
        _fork.register(self)

    # -- shared state --------------------------------------------------------------------------

    def _reset_common(self) -> None:
        """(Re)initialise the counters and the per-thread hold stack; creation and fork child."""
        # Guards the counters below (slow paths only; the fast paths never count).
        self._counters_lock = threading.Lock()
        self._created = 0
        self._closed = 0
        self._discarded = 0
        self._waits = 0
        self._wait_seconds = 0.0
        self._conflicts = 0
        # Per thread: the instances held by `with proxy:` blocks, innermost last.
        self._held = threading.local()
        if self.tracker is not None:
            self.tracker.reset()

    def closed_error(self) -> PoolClosed:
        return PoolClosed(
            f"this {self.kind} proxy was disposed with final=True (or the interpreter is "
            f"shutting down): create a new proxy instead of reusing it"
        )

    def create(self) -> T:
        """Call the factory: one new instance for this process. Raises what the factory raises."""
        if self._final:
            raise self.closed_error()
        factory = self._factory
        if factory is None:
            raise FactoryError(
                f"this {self.kind} proxy wraps an existing instance and has no factory to create "
                f"a new one: pass a factory (a function or class returning the client) instead"
            )
        obj = factory()
        if obj is None:
            name = getattr(factory, "__qualname__", repr(factory))
            raise FactoryError(
                f"the factory {name} passed to {self.kind}() returned None instead of a client"
            )
        with self._counters_lock:
            self._created += 1
        self.noticed(obj)
        if self.tracker is not None:
            self.tracker.created(obj)
        return obj

    def noticed(self, obj: object) -> None:
        """Record the client type the first time an instance is seen (slow path only)."""
        if self.client_type is None:
            self.client_type = type(obj)
        hook, self.on_first_instance = self.on_first_instance, None
        if hook is not None:
            hook(type(obj))

    def close_instance(self, obj: T, *, discarded: bool) -> None:
        """Close an instance this process created; a failing close is logged and contained."""
        if self.tracker is not None:
            self.tracker.forget(obj)
        try:
            if self._close_fn is not None:
                self._close_fn(obj)
            else:
                close = getattr(obj, "close", None)
                if callable(close):
                    close()
        except Exception:
            log.warning(
                "safeclients: closing a %s held by a %s proxy raised; the instance is dropped",
                type(obj).__name__,
                self.kind,
                exc_info=True,
            )
        with self._counters_lock:
            if discarded:
                self._discarded += 1
            else:
                self._closed += 1

    def count_wait(self, seconds: float) -> None:
        with self._counters_lock:
            self._waits += 1
            self._wait_seconds += seconds

    def count_conflict(self) -> None:
        with self._counters_lock:
            self._conflicts += 1

    def stats(self) -> Stats:
        live = self.live()  # outside the counters lock: never nest it inside another lock
        with self._counters_lock:
            return Stats(
                policy=self.kind,
                created=self._created,
                closed=self._closed,
                discarded=self._discarded,
                live=live,
                waits=self._waits,
                wait_seconds=self._wait_seconds,
                conflicts=self._conflicts,
            )

    # -- override surface ----------------------------------------------------------------------

    def acquire(self) -> T:
        raise NotImplementedError

    def release(self, obj: T, broken: bool) -> None:
        raise NotImplementedError

    def dispose(self, final: bool) -> None:
        raise NotImplementedError

    def after_fork(self) -> None:
        raise NotImplementedError

    def shutdown(self) -> None:
        """Interpreter exit: ``dispose(final=True)``, without waiting on a thread stuck in a call."""
        self.dispose(True)

    def live(self) -> int:
        raise NotImplementedError

    def peek(self) -> T:
        """The instance ``proxy.__wrapped__`` shows (no lock held, no checkout)."""
        raise NotImplementedError

    def forwarder(self, name: str) -> object:
        """Class attribute forwarding the client method ``name``; generic unless overridden."""
        policy = self

        def forward(proxy: object, *args: Any, **kwargs: Any) -> Any:
            return policy.call(name, args, kwargs)

        forward.__name__ = forward.__qualname__ = name
        return forward

    # -- the generic path (dunders, checkout, unknown attributes, SAFECLIENTS_CHECK) -----------

    def enter(self) -> T:
        """Fork check, then ``acquire`` (and the invariant check under SAFECLIENTS_CHECK)."""
        if not ARMED[0]:
            _fork.check()
        obj = self.acquire()
        if self.tracker is not None:
            try:
                self.tracker.enter(obj)
            except BaseException:
                self.release(obj, False)
                raise
        return obj

    def leave(self, obj: T, broken: bool) -> None:
        if self.tracker is not None:
            self.tracker.leave(obj)
        self.release(obj, broken)

    def apply(self, func: Callable[..., Any], *args: Any) -> Any:
        """``func(instance, *args)`` with an instance held for the duration."""
        obj = self.enter()
        try:
            result = func(obj, *args)
        except BaseException as exc:
            self.leave(obj, self.is_broken(exc))
            raise
        self.leave(obj, False)
        return result

    def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        obj = self.enter()
        try:
            result = getattr(obj, name)(*args, **kwargs)
        except BaseException as exc:
            self.leave(obj, self.is_broken(exc))
            raise
        self.leave(obj, False)
        return result

    def attribute(self, name: str) -> Any:
        """``proxy.name`` for a name with no fast forwarder: a value, or a call-through."""
        value = self.apply(getattr, name)
        if callable(value) and not isinstance(value, type):
            return CallThrough(self, name)
        return value

    def hold(self) -> T:
        """Start a ``with proxy:`` block: the instance stays held until ``unhold``."""
        obj = self.enter()
        stack: list[T] | None = getattr(self._held, "stack", None)
        if stack is None:
            stack = self._held.stack = []
        stack.append(obj)
        return obj

    def unhold(self, broken: bool) -> T:
        obj: T = self._held.stack.pop()
        self.leave(obj, broken)
        return obj

    def held(self) -> T:
        stack: list[T] = self._held.stack
        return stack[-1]


class CallThrough:
    """What ``proxy.name`` returns for a callable with no fast forwarder: each call holds an
    instance (lock, checkout) for its own duration only."""

    __slots__ = ("_policy", "_name")

    def __init__(self, policy: Policy[Any], name: str) -> None:
        self._policy = policy
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._policy.call(self._name, args, kwargs)

    def __repr__(self) -> str:
        return f"<safeclients call-through {self._name!r} of a {self._policy.kind} proxy>"
