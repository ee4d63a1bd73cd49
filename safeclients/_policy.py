"""The policy base: what every proxy delegates to.

A proxy (``_proxy.Proxy``) owns no state of its own beyond ``_self_policy``; a ``Policy`` holds the
factory, the instances, the locks and the counters.

Override surface (what a policy subclass defines)
-------------------------------------------------
* ``USE``: the policy's use of an instance, stated once (see ``_use``): statements that *get* an
  instance for the calling thread and *put* it back, ok or broken. Every path is compiled from
  it: forwarders, ``call``, ``apply`` (special methods), ``get``/``put`` (blocks).
* ``prime()``: create an instance where the next ``get`` finds it, without a use, so a first
  call can learn the client type, install the forwarders and run with a single acquisition.
* ``dispose(final)``: close the instances, without closing one under a running call.
* ``after_fork()``: in a fork child, drop inherited instances *without closing them* and replace
  every lock (see ``_fork`` for how a fork is detected).
* ``live()``: how many instances it holds; ``peek()``: what ``proxy.__wrapped__`` shows.
* optionally ``shutdown()``: interpreter exit, default ``dispose(True)``.

Caller surface (what the proxy, ``control`` and the compiled paths use)
-----------------------------------------------------------------------
``get()``, ``put(obj, token, broken)``, ``call(name, args, kwargs)``, ``apply(func, *args)``,
``forwarder(name)``, ``attribute(name)``, ``hold()``/``unhold(held, broken)`` (``with proxy:``),
``stats()``; and for subclasses ``create()``, ``close_instance()``, ``count_wait()``.

Which thread runs what: the compiled paths run in request threads; ``dispose`` in whichever
thread calls ``safeclients.dispose`` (or the interpreter's exit); ``after_fork`` in the fork
child's first caller, with no other thread of the child inside the policy yet.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import os
import threading
import types
import typing
from collections.abc import Callable
from typing import Any, ClassVar, Generic, NamedTuple, TypeVar, Union

from safeclients import _check, _fork
from safeclients._use import Use, compiled
from safeclients.errors import FactoryError, PoolClosed
from safeclients.stats import Stats

T = TypeVar("T")

log = logging.getLogger("safeclients")

DiscardOn = Union[
    type[BaseException], tuple[type[BaseException], ...], Callable[[BaseException], bool]
]

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
    return any(
        part in klass.__name__ for klass in type(exc).__mro__ for part in _BROKEN_NAME_PARTS
    )


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


def check_factory(kind: str, factory: object) -> None:
    """Refuse a non-callable factory at proxy creation, with a sentence."""
    if not callable(factory):
        raise FactoryError(
            f"{kind}() needs a zero-argument callable that returns a client, got "
            f"{factory!r} ({type(factory).__name__})"
        )


def _annotated_type(factory: Callable[[], Any]) -> type | None:
    """The class a factory's return annotation names, if it names one (else None)."""
    try:
        hint = typing.get_type_hints(factory).get("return")
    except (NameError, TypeError, AttributeError, SyntaxError):
        return None  # an annotation that cannot be evaluated here (TYPE_CHECKING imports)
    if hint is Any:  # a class on Python >= 3.11, but not one isinstance() accepts
        return None
    if isinstance(hint, type) and hint is not object and not isinstance(None, hint):
        return hint
    return None


def is_factory(obj: object) -> bool:
    """A function, method, partial or class is a factory; anything else is an instance."""
    return isinstance(
        obj,
        (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType, functools.partial),
    )


def instance_or_factory(obj_or_factory: Any) -> tuple[Callable[[], Any] | None, Any]:
    """Split ``locked``'s and ``guarded``'s argument into (factory, None) or (None, instance)."""
    if is_factory(obj_or_factory):
        return obj_or_factory, None
    return None, obj_or_factory


class Held(NamedTuple):
    """One ``with proxy:`` block's instance: what ``put`` needs, and the fork generation."""

    obj: Any
    token: Any
    generation: int


class Policy(Generic[T]):
    """Base of the policies; see the module docstring for the two surfaces."""

    kind: ClassVar[str] = "policy"
    USE: ClassVar[Use]
    #: Whether ``async with checkout(proxy)`` is allowed: only where nothing is held across an
    #: await (``per_loop``); a lock or a slot held across one is the lead's open question.
    async_blocks: ClassVar[bool] = False

    # Bound at creation from the compiled USE (instance attributes: one dict lookup per use).
    get: Callable[[], tuple[Any, Any]]
    put: Callable[[Any, Any, bool], None]
    call: Callable[[str, tuple[Any, ...], dict[str, Any]], Any]
    apply: Callable[..., Any]

    def __init__(
        self,
        factory: Callable[[], T] | None,
        *,
        close: Callable[[T], object] | None = None,
        discard_on: DiscardOn | None = None,
        instance: T | None = None,
        checkable: bool = True,
    ) -> None:
        if factory is not None:
            check_factory(self.kind, factory)
        if close is not None and not callable(close):
            raise TypeError(f"close must be a callable taking the client, got {close!r}")
        self._factory = factory
        self._close_fn = close
        self.is_broken = discard_predicate(discard_on)
        self.client_type: type | None = factory if isinstance(factory, type) else None
        # The type a factory's return annotation promises: known before any instance exists, so
        # the forwarders are installed up front and introspection (isinstance, doctest) creates
        # nothing. The first real instance corrects it if it is a subclass.
        self._provisional = False
        if self.client_type is None and factory is not None:
            self.client_type = _annotated_type(factory)
            self._provisional = self.client_type is not None
        if instance is not None:
            self.client_type = type(instance)
        # Called once with the type of the first instance (the proxy installs fast forwarders).
        self.on_first_instance: Callable[[type], None] | None = None
        self.tracker: _check.Tracker | None = (
            _check.Tracker(self.kind) if checkable and _check.enabled() else None
        )
        self._final = False
        # Per context (thread, task, greenlet): the `with proxy:` blocks open, innermost last.
        # A tuple, never mutated: a task's copy of the context must not see another's blocks.
        self._holds: contextvars.ContextVar[tuple[Held, ...]] = contextvars.ContextVar(
            f"safeclients.{self.kind}.holds", default=()
        )
        self._reset_common()
        self._bind_use()
        _fork.register(self)

    def _bind_use(self) -> None:
        """Bind the paths compiled from ``USE`` to this policy (at creation only)."""
        paths = compiled(self.USE, self.kind, self.tracker is not None)
        args = (self, self.is_broken, self.tracker)
        self._make_forwarder = functools.partial(paths.makers["forwarder"], *args)
        self.get = paths.makers["get"](*args, None)
        self.put = paths.makers["put"](*args, None)
        self.call = paths.makers["call"](*args, None)
        self.apply = paths.makers["apply"](*args, None)

    # -- shared state --------------------------------------------------------------------------

    @property
    def replaceable(self) -> bool:
        """Whether a closed instance can be replaced: only with a factory to make a new one."""
        return self._factory is not None

    def _reset_common(self) -> None:
        """(Re)initialise the counters; creation and fork child."""
        # Guards the counters below (slow paths only; the fast paths never count).
        self._counters_lock = threading.Lock()
        self._created = 0
        self._closed = 0
        self._discarded = 0
        self._close_failed = 0
        self._waits = 0
        self._wait_seconds = 0.0
        self._conflicts = 0
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
        if self.client_type is None or self._provisional:
            self.client_type = type(obj)
            self._provisional = False
        hook, self.on_first_instance = self.on_first_instance, None
        if hook is not None:
            hook(type(obj))

    def close_instance(self, obj: T, *, discarded: bool) -> bool:
        """Close an instance this process created; a failing close is logged and contained.

        Returns whether the close succeeded; only a close that succeeded is counted as closed
        (or discarded). A ``BaseException`` from the close (``KeyboardInterrupt``) is re-raised
        after the bookkeeping, so no slot or record is lost to it.
        """
        if self.tracker is not None:
            self.tracker.forget(obj)
        interrupted: BaseException | None = None
        ok = False
        try:
            if self._close_fn is not None:
                self._close_fn(obj)
            else:
                close = getattr(obj, "close", None)
                if callable(close):
                    close()
            ok = True
        except Exception as exc:
            log.warning(
                "safeclients: closing a %s held by a %s proxy raised %s: %s; the instance is "
                "dropped",
                type(obj).__name__,
                self.kind,
                type(exc).__name__,
                exc,
            )
        except BaseException as exc:
            interrupted = exc
        with self._counters_lock:
            if not ok:
                self._close_failed += 1
            elif discarded:
                self._discarded += 1
            else:
                self._closed += 1
        if interrupted is not None:
            raise interrupted
        return ok

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
                close_failed=self._close_failed,
            )

    # -- override surface ----------------------------------------------------------------------

    def prime(self) -> None:
        raise NotImplementedError

    def dispose(self, final: bool) -> None:
        raise NotImplementedError

    def after_fork(self) -> None:
        raise NotImplementedError

    def shutdown(self) -> None:
        """Interpreter exit: ``dispose(final=True)``, without waiting on a thread stuck in a call."""
        self.dispose(True)

    def green_reset(self) -> None:
        """gevent just patched ``threading`` (see ``_green``): make locks and thread-locals
        again, greenlet-aware. Runs where ``patch_all()`` runs, before requests; default: none."""

    def live(self) -> int:
        raise NotImplementedError

    def peek(self) -> T:
        """The instance ``proxy.__wrapped__`` shows: one that exists already, for this thread;
        never created, waited for or locked. ``AttributeError`` when there is none."""
        if not _fork.ARMED[0]:
            _fork.check()
        obj = self.existing()
        if obj is None:
            raise AttributeError(
                f"this {self.kind} proxy has no instance for this thread yet (introspection "
                f"never creates one): use the proxy, or `with safeclients.checkout(proxy) as "
                f"client:`"
            )
        return obj

    def existing(self) -> T | None:
        """The instance this thread would use now, if one exists (``peek``)."""
        raise NotImplementedError

    # -- caller surface ------------------------------------------------------------------------

    def forwarder(self, name: str) -> Callable[..., Any]:
        """The class attribute for the client method ``name``: the use, specialised by name."""
        forward: Callable[..., Any] = self._make_forwarder(name)
        forward.__name__ = forward.__qualname__ = name
        return forward

    def attribute(self, name: str) -> Any:
        """``proxy.name`` for a name with no fast forwarder: a value, or a call-through."""
        value = self.apply(getattr, name)
        if callable(value) and not isinstance(value, type):
            return CallThrough(self, (name,), value)
        return value

    def hold(self) -> Held:
        """Start a ``with proxy:`` block: the instance stays held until ``unhold``.

        The block's record lives in a context variable, so two coroutines of one thread (or two
        greenlets) each get back their own instance, whatever order their blocks end in.
        """
        obj, token = self.get()
        held = Held(obj, token, _fork.GENERATION[0])
        holds = self._holds
        holds.set((*holds.get(), held))
        return held

    def current_hold(self) -> Held:
        """The innermost ``with proxy:`` block open in this context."""
        return self._holds.get()[-1]

    def unhold(self, held: Held, broken: bool) -> None:
        """End a ``with proxy:`` block: give its instance back.

        A block that began before a fork gives nothing back in the child: the child's reset
        already dropped that instance, and the lock or slot it held belongs to the parent.
        """
        holds = self._holds.get()
        if holds and holds[-1] is held:
            self._holds.set(holds[:-1])
        else:
            self._holds.set(tuple(other for other in holds if other is not held))
        if not _fork.ARMED[0]:
            _fork.check()
        if held.generation != _fork.GENERATION[0]:
            return
        self.put(held.obj, held.token, broken)

    def held_elsewhere(self) -> bool:
        """Whether this context already holds an instance in a block (for pooled's message)."""
        return bool(self._holds.get())


def _call_path(obj: Any, path: tuple[str, ...], args: Any, kwargs: Any) -> Any:
    target = obj
    for name in path:
        target = getattr(target, name)
    return target(*args, **kwargs)


class CallThrough:
    """What ``proxy.name`` returns for a callable with no fast forwarder: each call holds an
    instance (lock, checkout) for its own duration only.

    A callable with attributes of its own keeps them: a callable attribute of it is another
    call-through, one step further down the path (``xmlrpc.client``'s
    ``proxy.system.listMethods()`` runs ``obj.system.listMethods()`` on a held instance); any
    other attribute (``__doc__``, ``__name__``) is read from the callable seen at lookup.
    """

    __slots__ = ("_policy", "_path", "_seen")

    def __init__(self, policy: Policy[Any], path: tuple[str, ...], seen: object) -> None:
        self._policy = policy
        self._path = path
        self._seen = seen

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if len(self._path) == 1:
            return self._policy.call(self._path[0], args, kwargs)
        return self._policy.apply(_call_path, self._path, args, kwargs)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._seen, name)
        if callable(value) and not isinstance(value, type) and not name.startswith("__"):
            return CallThrough(self._policy, (*self._path, name), value)
        return value

    @property
    def __doc__(self) -> Any:  # type: ignore[override]
        return getattr(self._seen, "__doc__", None)

    @property
    def __wrapped__(self) -> Any:
        # inspect.signature() follows __wrapped__: the callable's own signature, not ours.
        return self._seen

    def __repr__(self) -> str:
        path = ".".join(self._path)
        return f"<safeclients call-through {path!r} of a {self._policy.kind} proxy>"


__all__ = [
    "Policy",
    "Held",
    "CallThrough",
    "DiscardOn",
    "default_discard",
    "discard_predicate",
    "is_factory",
    "instance_or_factory",
    "log",
]
