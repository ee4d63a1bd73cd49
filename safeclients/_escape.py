"""What a call returns that is still bound to the instance it ran on: classify it, wrap it.

A policy's use of an instance ends when the call returns. Some results keep using the instance
after that: a DB-API cursor (``db.cursor()``: its ``execute`` runs on the connection), a pika
channel, a redis pipeline, an HTTP response, a coroutine (``await p.op()``: the work happens when
it is awaited), a generator, or the client itself (a fluent ``p.query().filter()``). Handed out
bare, such a result runs on an instance the policy has already given to another thread: wrong
results, silently. So a call whose result is not a plain value comes here, and:

* the client itself: the use ends, and the *proxy* is returned, so the next call is a use again;
* an awaitable: the use lasts until it has been awaited (``locked`` refuses: its lock cannot be
  held across an ``await`` without letting every task of the thread in);
* a generator: the use lasts until it is exhausted or closed (``HeldIterator``);
* a derived object: the use lasts until it is done with (its ``with`` block exits, it is
  closed, exhausted, or collected), inside a ``Derived`` proxy.

The use itself (its pin, its end, its owner) is ``_uses``'s; this module only classifies and
wraps. A ``Derived`` proxy's class is made once per derived type, with a compiled forwarder per
public method (as the client's proxy has): each checks the hold (open, same thread or task),
calls, counts an error for the instance (``discard_on``), and sends a result that is not plain
through the same classification, so ``cur.execute()`` returning the cursor gives back the
wrapped cursor, and an iterator, generator or object a derived method returns keeps the same
instance (its hold joins the pin). Iteration (``for row in cur``, ``next(cur)``), ``with`` and
``async with`` go through the same checks.

How a derived object is recognised: the client's profile (``safeclients.profiles``) names the
methods that return one (``cursor``, ``channel``, ``pipeline``, ...); otherwise a result holding
a reference to the instance (in its ``__dict__`` or ``__slots__``, or as
``.connection``/``.client``/``.conn``/``._connection``) is bound to it. That is decided for each
result, never cached per type: two results of one type may differ. Plain values (numbers,
strings, bytes, None, tuples, lists, dicts, sets) never are, and never reach this module.

Which thread runs what: ``escaped`` runs in the calling context, right after the call; a hold's
end runs where the derived object is closed or collected (``_uses``).
"""

from __future__ import annotations

import inspect
import keyword
import types
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, Protocol

import wrapt

from safeclients import _codegen, _uses
from safeclients._uses import Hold, Holder
from safeclients.errors import AsyncUseError

#: Result types that cannot be bound to the instance: returned as they are, the use ends.
PLAIN: frozenset[type] = frozenset(
    {
        type(None),
        bool,
        int,
        float,
        complex,
        str,
        bytes,
        bytearray,
        memoryview,
        tuple,
        list,
        dict,
        set,
        frozenset,
        range,
        type,
    }
)


class Escaping(Holder, Protocol):
    """What ``escaped`` needs from a policy, beyond ``_uses.Holder``."""

    profile: Any
    nothing_to_give_back: bool
    tracker: Any  # check mode's _check.Tracker, or None

    @property
    def holds_across_await(self) -> bool:
        """Whether a use may last across an ``await`` (a class variable of the policies)."""

    def own_proxy(self) -> Any: ...

    def watched(self, obj: Any, token: Any, result: Awaitable[Any]) -> Any:
        """An awaited call on an instance never given back, awaiting ``result`` (its errors
        count): ``watched_call``, or per_loop's, which also counts the call running."""


# Attribute names by which a result commonly refers to the client that made it.
_BACK_REFERENCES = ("connection", "_connection", "conn", "_conn", "client", "_client")


def refers_to(result: object, targets: tuple[object, ...]) -> bool:
    """The general rule: does ``result`` hold a reference to one of ``targets``?"""
    try:
        values = list(vars(result).values())
    except TypeError:
        values = []
    for klass in type(result).__mro__:
        for slot in getattr(klass, "__slots__", ()):
            if isinstance(slot, str):
                values.append(getattr(result, slot, None))
    for value in values:
        for target in targets:
            if value is target:
                return True
    for name in _BACK_REFERENCES:
        try:
            if inspect.getattr_static(result, name, None) is not None:
                value = getattr(result, name)
                if any(value is target for target in targets):
                    return True
        except Exception:  # a property that fails to read is not a back reference
            continue
    return False


def is_bound(policy: Escaping, obj: object, result: object, name: str | None) -> bool:
    """Whether ``result`` (of method ``name`` on ``obj``) keeps using ``obj``."""
    profile = policy.profile
    if profile is not None and name is not None and name in profile.derived:
        return True
    return refers_to(result, (obj,))


# What a result's type says about every result of that type (unlike whether it is bound, which
# is decided per result): cached per type.
OTHER, PROXY, AWAITABLE, GENERATOR = 0, 1, 2, 3
_kinds: dict[type, int] = {}


def _kind(result: object) -> int:
    kind = type(result)
    found = _kinds.get(kind)
    if found is None:
        if issubclass(kind, wrapt.BaseObjectProxy):
            # Another proxy (ours or wrapt's): never inspected further (isinstance and
            # attribute checks on it could create its client).
            found = PROXY
        elif inspect.isawaitable(result):
            found = AWAITABLE
        elif isinstance(result, (types.GeneratorType, types.AsyncGeneratorType)):
            found = GENERATOR
        else:
            found = OTHER
        if found != AWAITABLE or kind is not types.GeneratorType:
            _kinds[kind] = found  # not a generator-based coroutine: its type decides
    return found


def escaped(
    policy: Escaping, obj: Any, token: Any, result: Any, name: str | None, proxy: Any
) -> Any:
    """A use's result was not a plain value: end the use, or extend it to cover the result.

    Called by the compiled paths after a call succeeded, with the use still open (the instance
    held, not yet put back). Whatever it returns is what the caller gets.
    """
    if result is obj:
        policy.put(obj, token, False)
        return proxy if proxy is not None else policy.own_proxy()
    kind = _kind(result)
    if kind == OTHER:
        if is_bound(policy, obj, result, name):
            return wrap(result, _uses.hold(policy, obj, token, name))
    elif kind == AWAITABLE:
        return _awaitable(policy, obj, token, result, name)
    elif kind == GENERATOR:
        return _wrap_iterator(_uses.hold(policy, obj, token, name), result)
    policy.put(obj, token, False)
    return result


def _awaitable(
    policy: Escaping, obj: Any, token: Any, result: Awaitable[Any], name: str | None
) -> Any:
    if not policy.holds_across_await:
        policy.put(obj, token, False)
        close = getattr(result, "close", None)
        if callable(close):
            close()  # never awaited: no "coroutine was never awaited" warning
        raise AsyncUseError(
            f"{type(obj).__name__}.{name or 'call'}() returned an awaitable, and a "
            f"{policy.kind} proxy cannot hold its lock across an await (every task of the "
            f"thread would get in): use safeclients.per_loop (one instance per event loop) "
            f"or safeclients.pooled for an async client"
        )
    if type(result) is not types.CoroutineType:
        # More than a coroutine (redis.asyncio's pipeline, aiohttp's request context manager, a
        # future): keep its whole interface (``async with``, its methods) in a derived proxy,
        # whose ``await`` ends the use. Not the context's pin: it may be awaited in another task.
        return wrap(result, _uses.hold(policy, obj, token, name, register=False))
    if policy.nothing_to_give_back and type(token) is not _uses.Pin:
        # per_thread, per_process, per_loop: the instance stays where it is whatever happens, so
        # there is no use to hold; only an error while awaiting still counts (discard_on).
        if policy.tracker is None:
            return policy.watched(obj, token, result)
        return _watched_checked(policy, obj, token, result)
    # Not the context's pin: an awaitable is often awaited in another task (gather).
    return held_awaitable(_uses.hold(policy, obj, token, name, register=False), result)


def held_awaitable(
    hold: Hold, result: Awaitable[Any], then: Callable[[Any], Any] | None = None
) -> Any:
    """A coroutine that awaits ``result`` and then ends ``hold``; errors count for it.
    ``then`` maps the awaited value (a derived object's: its own cursor back to the wrapped
    one), before the hold ends."""

    async def held() -> Any:
        try:
            hold.pin.policy.bind_awaited(hold.pin.obj)
            value = await result
            return value if then is None or type(value) in PLAIN else then(value)
        except BaseException as exc:
            hold.noted(exc)
            raise
        finally:
            hold.release()

    coroutine = held()
    # Never awaited: the coroutine's `finally` runs only if it started, so release from a
    # finalizer on the wrapper too (awaitables are not the cursor path: this cost is fine).
    weakref.finalize(coroutine, hold.release)
    return coroutine


async def watched_call(policy: Escaping, obj: Any, token: Any, result: Awaitable[Any]) -> Any:
    """An awaited call on an instance that is never given back: count its errors (the
    default ``Policy.watched``)."""
    try:
        return await result
    except BaseException as exc:
        if policy.is_broken(exc, obj):
            policy.put(obj, token, True)
        raise


def _watched_checked(policy: Escaping, obj: Any, token: Any, result: Awaitable[Any]) -> Any:
    """``watched_call`` under check mode: the use lasts until the await ends, so the tracker
    (entered by the call) is left then, or when the coroutine is dropped unawaited, never
    before (the loop's or thread's other tasks may be inside the instance meanwhile)."""
    ended = [False]
    coroutine = _watching(policy, obj, token, result, ended)
    weakref.finalize(coroutine, _leave_unawaited, policy.tracker, obj, ended)
    return coroutine


async def _watching(
    policy: Escaping, obj: Any, token: Any, result: Awaitable[Any], ended: list[bool]
) -> Any:
    try:
        value = await result
    except BaseException as exc:
        ended[0] = True
        policy.put(obj, token, policy.is_broken(exc, obj))  # leaves the tracker too
        raise
    ended[0] = True
    policy.tracker.leave(obj)
    return value


def _leave_unawaited(tracker: Any, obj: Any, ended: list[bool]) -> None:
    """A watched coroutine was dropped without being awaited (to the end): its use ends."""
    if not ended[0]:
        ended[0] = True
        tracker.leave(obj)


def derived_result(derived: Derived, hold: Hold, result: Any, name: str) -> Any:
    """A derived object's method returned ``result`` (not a plain value): classify it the same
    way, with the derived object as a second thing it may refer to. A result that keeps the
    instance joins the hold's pin, so the instance stays until the last of them ends."""
    wrapped = derived.__wrapped__
    if result is wrapped:
        return derived  # fluent: cur.execute() returns the cursor
    kind = _kind(result)
    if kind == OTHER:
        if refers_to(result, (hold.pin.obj, wrapped)):
            return wrap(result, hold.joined(name))
    elif kind == AWAITABLE:
        return held_awaitable(
            hold.joined(name), result, lambda value: derived_result(derived, hold, value, name)
        )
    elif kind == GENERATOR:
        return _wrap_iterator(hold.joined(name), result)
    return result


def wrap(result: Any, hold: Hold) -> Derived:
    """``result`` in the ``Derived`` proxy of its type, holding ``hold``."""
    derived = derived_class(type(result))(result)
    derived._self_hold = hold
    return derived


def _wrap_iterator(hold: Hold, result: Any) -> Any:
    if isinstance(result, types.AsyncGeneratorType):
        return HeldAsyncIterator(result, hold)
    return HeldIterator(result, hold)


# -- the derived proxy ---------------------------------------------------------------------------

# Generic for the type checker only (see _proxy): older wrapt cannot subscript it at runtime.
if TYPE_CHECKING:
    _DerivedBase = wrapt.ObjectProxy[Any]
else:
    _DerivedBase = wrapt.ObjectProxy


class Derived(_DerivedBase):
    """A derived object (cursor, channel, ...) that holds its instance until it is done with.

    Its class is made per derived type (``derived_class``) with compiled forwarders; the names
    defined here are the ones that end the use or need more than a forwarder.
    """

    # As the client proxy (_proxy.Proxy): the generic lookup finds our names without the C
    # proxy's slower one; names we do not have go to __getattr__.
    __getattribute__ = object.__getattribute__
    # wrapt's own __init__ (C) makes it; `wrap` then sets the hold: no Python-level __init__
    # on the path every cursor takes.
    __slots__ = ("_self_hold",)
    _self_hold: Hold

    def __del__(self) -> None:
        # Collected without being closed: end its use (in whichever thread drops it last).
        try:
            hold = self._self_hold
        except AttributeError:
            return
        if hold.open:
            hold.release()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_self_"):
            raise AttributeError(name)
        hold = self._self_hold
        # Reading an attribute after the use ended is harmless; from another context it is not.
        if hold.open and hold.ident != _codegen.SHARED["get_ident"]():
            hold.refuse(f"{type(self.__wrapped__).__name__}.{name}")
        value = getattr(self.__wrapped__, name)
        if not callable(value) or isinstance(value, type):
            return value
        return _DerivedCall(self, value, name)

    def close(self, *args: Any, **kwargs: Any) -> Any:
        hold = self._self_hold
        if hold.open and hold.ident != _codegen.SHARED["get_ident"]():
            hold.refuse(f"{type(self.__wrapped__).__name__}.close()")
        try:
            return self.__wrapped__.close(*args, **kwargs)
        except BaseException as exc:
            hold.noted(exc)
            raise
        finally:
            hold.release()

    def __enter__(self) -> Any:
        hold = self._self_hold
        hold.refuse(f"{type(self.__wrapped__).__name__} (with)")
        try:
            entered = self.__wrapped__.__enter__()
        except BaseException as exc:
            hold.noted(exc)
            raise
        return self if entered is self.__wrapped__ else entered

    def __exit__(self, *exc_info: Any) -> Any:
        hold = self._self_hold
        try:
            return self.__wrapped__.__exit__(*exc_info)
        except BaseException as exc:
            hold.noted(exc)
            raise
        finally:
            if exc_info[1] is not None:
                hold.noted(exc_info[1])
            hold.release()

    async def __aenter__(self) -> Any:
        hold = self._self_hold
        hold.refuse(f"{type(self.__wrapped__).__name__} (async with)")
        try:
            entered = await self.__wrapped__.__aenter__()
        except BaseException as exc:
            hold.noted(exc)
            raise
        return self if entered is self.__wrapped__ else entered

    async def __aexit__(self, *exc_info: Any) -> Any:
        hold = self._self_hold
        try:
            return await self.__wrapped__.__aexit__(*exc_info)
        except BaseException as exc:
            hold.noted(exc)
            raise
        finally:
            if exc_info[1] is not None:
                hold.noted(exc_info[1])
            hold.release()

    def __iter__(self) -> Any:
        hold = self._self_hold
        hold.refuse(f"{type(self.__wrapped__).__name__} (iteration)")
        iterator = iter(self.__wrapped__)
        if iterator is self.__wrapped__:
            return self  # sqlite3 and DB-API cursors iterate themselves: keep the checks
        return derived_result(self, hold, iterator, "__iter__")

    # __next__: compiled per derived class (_NEXT), as the forwarders are: it runs per row.

    def __aiter__(self) -> Any:
        hold = self._self_hold
        hold.refuse(f"{type(self.__wrapped__).__name__} (async iteration)")
        iterator = self.__wrapped__.__aiter__()
        if iterator is self.__wrapped__:
            return self
        return derived_result(self, hold, iterator, "__aiter__")

    async def __anext__(self) -> Any:
        hold = self._self_hold
        hold.refuse(f"{type(self.__wrapped__).__name__} (async next)")
        try:
            return await self.__wrapped__.__anext__()
        except StopAsyncIteration:
            raise
        except BaseException as exc:
            hold.noted(exc)
            raise

    def __repr__(self) -> str:
        return f"<safeclients derived {self.__wrapped__!r}>"


class DerivedAwaitable(Derived):
    """A derived object that is also awaitable: awaiting it ends its use, unless what it gives
    is the object itself (redis.asyncio's ``await pipeline``) or is bound to the instance."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, Any]:
        return self._self_awaited().__await__()

    async def _self_awaited(self) -> Any:
        hold = self._self_hold
        wrapped = self.__wrapped__
        try:
            value = await wrapped
        except BaseException as exc:
            hold.noted(exc)
            hold.release()
            raise
        if value is wrapped:
            return self  # still the same object, still in use
        try:
            return value if type(value) in PLAIN else derived_result(self, hold, value, "await")
        finally:
            hold.release()


class _DerivedCall:
    """A derived object's method with no compiled forwarder (an instance attribute, a name
    looked up with getattr): the same checks, at call time."""

    __slots__ = ("_derived", "_method", "_name")

    def __init__(self, derived: Derived, method: Callable[..., Any], name: str) -> None:
        self._derived = derived
        self._method = method
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        derived = self._derived
        hold: Hold = derived._self_hold
        if hold.ident != _codegen.SHARED["get_ident"]() or not hold.open:
            hold.refuse(f"{type(derived.__wrapped__).__name__}.{self._name}()")
        try:
            result = self._method(*args, **kwargs)
        except BaseException as exc:
            hold.noted(exc)
            raise
        if type(result) in PLAIN:
            return result
        return derived_result(derived, hold, result, self._name)


# One forwarder per public method of a derived type: the checks, the call, the classification.
_FORWARDER = """\
def _make():
    def {name}(self, /, {params}):
        hold = self._self_hold
        if hold.ident != get_ident() or not hold.open:
            hold.refuse({what!r})
        wrapped = self.__wrapped__
        try:
            result = wrapped.{name}({args})
        except BaseException as exc:
            hold.noted(exc)
            raise
        if type(result) in PLAIN:
            return result
        if result is wrapped:
            return self
        return derived_result(self, hold, result, {name!r})
    return {name}
"""

# Each step of a derived iterator (``for row in cur``): the same checks, per row.
_NEXT = """\
def _make():
    def __next__(self):
        hold = self._self_hold
        if hold.ident != get_ident() or not hold.open:
            hold.refuse({what!r})
        try:
            return next(self.__wrapped__)
        except StopIteration:
            raise
        except BaseException as exc:
            hold.noted(exc)
            raise
    return __next__
"""

_METHOD_TYPES = (
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
)

# Derived type -> its Derived subclass (made once per type, in the first thread that needs it).
_classes: dict[type, type[Derived]] = {}
_OWN_NAMES = frozenset(name for klass in DerivedAwaitable.__mro__ for name in vars(klass))
_scope = _codegen.scope({"PLAIN": PLAIN, "derived_result": derived_result})


def derived_class(kind: type) -> type[Derived]:
    """The ``Derived`` subclass for results of type ``kind``, with its forwarders."""
    found = _classes.get(kind)
    if found is not None:
        return found
    namespace: dict[str, Any] = {"__module__": __name__, "__doc__": Derived.__doc__}
    if "__dict__" in vars(Derived):
        namespace["__dict__"] = vars(Derived)["__dict__"]
    for name in dir(kind):
        if name.startswith("_") or name in _OWN_NAMES or keyword.iskeyword(name):
            continue
        try:
            attr = inspect.getattr_static(kind, name)
        except AttributeError:
            continue
        if not isinstance(attr, _METHOD_TYPES) or not name.isidentifier():
            continue
        source = _FORWARDER.format(
            name=name,
            params="*args, **kwargs",
            args="*args, **kwargs",
            what=f"{kind.__name__}.{name}()",
        )
        forward = _codegen.build(source, f"derived {kind.__name__}.{name}", _scope)()
        forward.__wrapped__ = attr
        forward.__doc__ = getattr(attr, "__doc__", None)
        namespace[name] = forward
    namespace["__next__"] = _codegen.build(
        _NEXT.format(what=f"{kind.__name__} (next)"), f"derived {kind.__name__}.__next__", _scope
    )()
    if any("__call__" in vars(klass) for klass in kind.__mro__):
        # A callable result (gRPC's multi-callables, what a stub's methods are): the call is a
        # use of the instance like any method's (a wrapt proxy does not forward calls).
        namespace["__call__"] = _codegen.build(
            _FORWARDER.format(
                name="__call__",
                params="*args, **kwargs",
                args="*args, **kwargs",
                what=f"{kind.__name__}()",
            ),
            f"derived {kind.__name__}.__call__",
            _scope,
        )()
    metaclass: Any = type(Derived)
    base = DerivedAwaitable if hasattr(kind, "__await__") else Derived
    made: type[Derived] = metaclass(f"derived_{kind.__name__}", (base,), namespace)
    return _classes.setdefault(kind, made)


# -- iterators -----------------------------------------------------------------------------------


class _HeldSteps:
    """A generator's hold, ended when the generator ends or, if it never does, when this
    wrapper is collected (in whichever thread drops it: ``Hold.release`` works from any)."""

    __slots__ = ("_inner", "_hold", "__weakref__")

    def __init__(self, inner: Any, hold: Hold) -> None:
        self._inner = inner
        self._hold = hold

    def __del__(self) -> None:
        hold = self._hold
        if hold.open:
            hold.release()


class HeldIterator(_HeldSteps):
    """A generator's use of its instance, from the first item to exhaustion or ``close()``.

    Each step first checks that the use is still open and in its own context, *before* resuming
    the generator, so a refused step from another thread leaves it intact for its owner.
    """

    __slots__ = ()
    _inner: Generator[Any, Any, Any]

    def __iter__(self) -> HeldIterator:
        return self

    def __next__(self) -> Any:
        return self.send(None)

    def send(self, value: Any) -> Any:
        if inspect.getgeneratorstate(self._inner) == inspect.GEN_CLOSED:
            raise StopIteration  # exhausted or closed: as a plain generator says
        hold = self._hold
        hold.refuse(f"generator {hold.name}")
        try:
            return self._inner.send(value)
        except StopIteration:
            hold.release()
            raise
        except BaseException as exc:
            hold.noted(exc)
            hold.release()
            raise

    def throw(self, *exc_info: Any) -> Any:
        hold = self._hold
        hold.refuse(f"generator {hold.name}")
        try:
            return self._inner.throw(*exc_info)
        except BaseException as exc:
            if not isinstance(exc, StopIteration):
                hold.noted(exc)
            hold.release()
            raise

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._hold.release()


class HeldAsyncIterator(_HeldSteps):
    """An async generator's use of its instance, until exhaustion or ``aclose()``."""

    __slots__ = ()
    _inner: AsyncGenerator[Any, Any]

    def __aiter__(self) -> HeldAsyncIterator:
        return self

    async def __anext__(self) -> Any:
        return await self.asend(None)

    async def asend(self, value: Any) -> Any:
        hold = self._hold
        hold.refuse(f"async generator {hold.name}")
        try:
            return await self._inner.asend(value)
        except StopAsyncIteration:
            hold.release()
            raise
        except BaseException as exc:
            hold.noted(exc)
            hold.release()
            raise

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._hold.release()


__all__ = ["PLAIN", "escaped", "is_bound", "refers_to", "Derived", "derived_class", "HeldIterator"]
