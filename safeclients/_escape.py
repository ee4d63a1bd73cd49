"""What a call returns that is still bound to the instance it ran on, and how it stays safe.

A policy's use of an instance ends when the call returns. Some results keep using the instance
after that: a DB-API cursor (``db.cursor()``: its ``execute`` runs on the connection), a pika
channel, a redis pipeline, an HTTP response, a coroutine (``await p.op()``: the work happens when
it is awaited), a generator, or the client itself (a fluent ``p.query().filter()``). Handed out
bare, such a result runs on an instance the policy has already given to another thread: wrong
results, silently. So a call whose result is not a plain value comes here, and:

* the client itself: the use ends, and the *proxy* is returned, so the next call is a use again;
* an awaitable: the use lasts until it has been awaited (``pooled`` holds its slot; ``locked``
  refuses, since its lock cannot be held across an ``await`` without letting every task of the
  thread in: use ``per_loop`` or ``pooled``);
* a generator: the use lasts until it is exhausted or closed;
* a derived object: the use lasts until it is done with (its ``with`` block exits, it is
  closed, or it is garbage-collected). It is returned inside a ``Derived`` proxy that counts its
  errors for the instance (``discard_on``) and refuses use from another thread
  (``CrossThreadUseError``), so a cursor can never outlive its connection's checkout.

How a derived object is recognised: the client's profile (``safeclients.profiles``) names the
methods that return one (``cursor``, ``channel``, ``pipeline``, ...); for a client without one,
the general rule is that a result holding a reference to the instance (in its ``__dict__`` or
``__slots__``, or as ``.connection``/``.client``/``.conn``/``._connection``) is bound to it. The
answer is cached per result type. Plain values (numbers, strings, bytes, None, tuples, lists,
dicts, sets) never are, and never reach this module: the compiled paths test ``type(result)``
against ``PLAIN`` first.

Which thread runs what: ``escaped`` runs in the calling request thread, right after the call;
a ``Derived`` proxy's release runs in the thread that closes it, or in the finalizer (whichever
thread drops the last reference).
"""

from __future__ import annotations

import inspect
import threading
import types
import weakref
from collections.abc import Awaitable, Generator
from typing import TYPE_CHECKING, Any

import wrapt

from safeclients.errors import AsyncUseError, CrossThreadUseError, OutlivedUseError

if TYPE_CHECKING:
    from safeclients._policy import Policy

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

# Attribute names by which a result commonly refers to the client that made it.
_BACK_REFERENCES = ("connection", "_connection", "conn", "_conn", "client", "_client")

# Result type -> whether its instances are bound to the instance that made them (general rule).
_bound_types: dict[type, bool] = {}


def _refers_to(result: object, obj: object) -> bool:
    """The general rule: does ``result`` hold a reference to ``obj``?"""
    try:
        values = list(vars(result).values())
    except TypeError:
        values = []
    for klass in type(result).__mro__:
        for slot in getattr(klass, "__slots__", ()):
            if isinstance(slot, str):
                values.append(getattr(result, slot, None))
    if any(value is obj for value in values):
        return True
    for name in _BACK_REFERENCES:
        try:
            if inspect.getattr_static(result, name, None) is not None and (
                getattr(result, name) is obj
            ):
                return True
        except Exception:  # a property that fails to read is not a back reference
            continue
    return False


def is_bound(policy: Policy[Any], obj: object, result: object, name: str | None) -> bool:
    """Whether ``result`` (of method ``name`` on ``obj``) keeps using ``obj``."""
    profile = policy.profile
    if profile is not None and name is not None and name in profile.derived:
        return True
    kind = type(result)
    known = _bound_types.get(kind)
    if known is None:
        known = _bound_types[kind] = _refers_to(result, obj)
    return known


def escaped(
    policy: Policy[Any], obj: Any, token: Any, result: Any, name: str | None, proxy: Any
) -> Any:
    """A use's result was not a plain value: end the use, or extend it to cover the result.

    Called by the compiled paths after a call succeeded, with the use still open (the instance
    held, not yet put back). Whatever it returns is what the caller gets.
    """
    if result is obj:
        policy.put(obj, token, False)
        return proxy if proxy is not None else policy.own_proxy()
    if issubclass(type(result), wrapt.BaseObjectProxy):
        # Another proxy (ours or wrapt's): returned as it is; never inspected (isinstance and
        # attribute checks on it could create its client).
        policy.put(obj, token, False)
        return result
    if inspect.isawaitable(result):
        return _hold_awaitable(policy, obj, token, result, name)
    if isinstance(result, types.GeneratorType):
        return _held_generator(policy, obj, token, result)
    if is_bound(policy, obj, result, name):
        return Derived(result, policy.derived_hold(obj, token, name, pin=True))
    policy.put(obj, token, False)
    return result


class Hold:
    """One use extended over a result's life: what ``put`` needs, given back exactly once.

    Kept apart from the ``Derived`` proxy so its finalizer holds no reference to the proxy.
    """

    __slots__ = ("policy", "obj", "token", "name", "owner", "broken", "_lock", "_open")

    def __init__(self, policy: Policy[Any], obj: Any, token: Any, name: str | None) -> None:
        self.policy = policy
        self.obj = obj
        self.token = token
        self.name = name
        self.owner = threading.get_ident()
        self.broken = False
        # Guards _open: release may race between an explicit close and the finalizer.
        self._lock = threading.Lock()
        self._open = True

    def check_use(self, what: str) -> None:
        """A call on the derived object: only while its use lasts, only in its thread."""
        if not self._open:
            raise OutlivedUseError(
                f"{what} was called after its use of the {self.policy.kind} proxy's instance "
                f"ended (its `with` block exited, or it was closed): the instance is back with "
                f"the policy and may be another thread's by now; make a new one"
            )
        self.check_thread(what)

    def check_thread(self, what: str) -> None:
        me = threading.get_ident()
        if me != self.owner and self._open:
            raise CrossThreadUseError(
                f"{what} is bound to the {type(self.obj).__name__} instance that thread "
                f"{self.owner} holds (from {self.name or 'a call'}()), and thread {me} used it: "
                f"a derived object (cursor, channel, pipeline, generator) belongs to the thread "
                f"that made it; make a new one in this thread"
            )

    def noted(self, exc: BaseException) -> None:
        """An error from the derived object counts for the instance (``discard_on``); closing a
        generator early (``GeneratorExit``) is no error."""
        if not isinstance(exc, GeneratorExit) and self.policy.is_broken(exc):
            self.broken = True

    def release(self) -> None:
        with self._lock:
            if not self._open:
                return
            self._open = False
        self.policy.end_hold(self)
        self.obj = self.token = None


def _release(hold: Hold) -> None:
    """Finalizer of a ``Derived`` proxy that was never closed: give its instance back."""
    try:
        hold.release()
    except RuntimeError:
        # A lock released by a thread that does not own it: the object was dropped in another
        # thread than the one that made it. Nothing safe to do but say so.
        from safeclients._policy import log

        log.warning(
            "safeclients: a %s derived object was garbage-collected in another thread than "
            "the one that made it; its %s instance stays held until the process exits. Close "
            "it (or use `with`) in the thread that made it",
            hold.policy.kind,
            type(hold.obj).__name__,
        )


# Generic for the type checker only (see _proxy): older wrapt cannot subscript it at runtime.
if TYPE_CHECKING:
    _DerivedBase = wrapt.ObjectProxy[Any]
else:
    _DerivedBase = wrapt.ObjectProxy


class Derived(_DerivedBase):
    """A derived object (cursor, channel, ...) that holds its instance until it is done with."""

    def __init__(self, wrapped: Any, hold: Hold) -> None:
        super().__init__(wrapped)
        self._self_hold = hold
        self._self_finalizer = weakref.finalize(self, _release, hold)

    def _self_done(self) -> None:
        self._self_finalizer.detach()
        self._self_hold.release()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_self_"):
            raise AttributeError(name)
        hold = self._self_hold
        hold.check_thread(f"{type(self.__wrapped__).__name__}.{name}")
        value = getattr(self.__wrapped__, name)
        if not callable(value) or isinstance(value, type):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            hold.check_use(f"{type(self.__wrapped__).__name__}.{name}()")
            try:
                return value(*args, **kwargs)
            except BaseException as exc:
                hold.noted(exc)
                raise

        return call

    def close(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.__wrapped__.close(*args, **kwargs)
        except BaseException as exc:
            self._self_hold.noted(exc)
            raise
        finally:
            self._self_done()

    def __enter__(self) -> Any:
        self._self_hold.check_thread(f"{type(self.__wrapped__).__name__} (with)")
        entered = self.__wrapped__.__enter__()
        return self if entered is self.__wrapped__ else entered

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc_info)
        except BaseException as exc:
            self._self_hold.noted(exc)
            raise
        finally:
            if exc_info[1] is not None:
                self._self_hold.noted(exc_info[1])
            self._self_done()

    def __iter__(self) -> Any:
        self._self_hold.check_thread(f"{type(self.__wrapped__).__name__} (iteration)")
        return iter(self.__wrapped__)

    def __repr__(self) -> str:
        return f"<safeclients derived {self.__wrapped__!r}>"


def _hold_awaitable(
    policy: Policy[Any], obj: Any, token: Any, result: Awaitable[Any], name: str | None
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
    if policy.nothing_to_give_back:
        # per_thread, per_process, per_loop: the instance stays where it is whatever happens, so
        # there is no use to hold; only an error while awaiting still counts (discard_on).
        return _watched(policy, obj, token, result)
    hold = policy.derived_hold(obj, token, name, pin=False)

    async def held() -> Any:
        try:
            return await result
        except BaseException as exc:
            hold.noted(exc)
            raise
        finally:
            hold.release()

    coroutine = held()
    # Never awaited: the coroutine's finalizer runs the `finally` only if it started, so
    # release from a finalizer on the wrapper too.
    weakref.finalize(coroutine, _release, hold)
    return coroutine


async def _watched(policy: Policy[Any], obj: Any, token: Any, result: Awaitable[Any]) -> Any:
    """An awaited call on an instance that is never given back: count its errors."""
    try:
        return await result
    except BaseException as exc:
        if policy.is_broken(exc):
            policy.put(obj, token, True)
        raise


class HeldIterator:
    """A generator's use of its instance, from the first item to exhaustion or ``close()``.

    Each step first checks that the use is still open and in its own thread, *before* resuming
    the generator, so a refused step from another thread leaves it intact for its owner.
    """

    __slots__ = ("_inner", "_hold", "_finalizer", "__weakref__")

    def __init__(self, inner: Generator[Any, Any, Any], hold: Hold) -> None:
        self._inner = inner
        self._hold = hold
        self._finalizer = weakref.finalize(self, _release, hold)

    def __iter__(self) -> HeldIterator:
        return self

    def __next__(self) -> Any:
        return self.send(None)

    def send(self, value: Any) -> Any:
        if inspect.getgeneratorstate(self._inner) == inspect.GEN_CLOSED:
            raise StopIteration  # exhausted or closed: as a plain generator says
        self._hold.check_use(f"generator {self._hold.name}")
        try:
            return self._inner.send(value)
        except StopIteration:
            self._done()
            raise
        except BaseException as exc:
            self._hold.noted(exc)
            self._done()
            raise

    def throw(self, *exc_info: Any) -> Any:
        self._hold.check_use(f"generator {self._hold.name}")
        try:
            return self._inner.throw(*exc_info)
        except BaseException as exc:
            if not isinstance(exc, StopIteration):
                self._hold.noted(exc)
            self._done()
            raise

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._done()

    def _done(self) -> None:
        self._finalizer.detach()
        self._hold.release()


def _held_generator(
    policy: Policy[Any], obj: Any, token: Any, result: Generator[Any, Any, Any]
) -> HeldIterator:
    name = getattr(result, "__name__", None)
    return HeldIterator(result, policy.derived_hold(obj, token, name, pin=False))
