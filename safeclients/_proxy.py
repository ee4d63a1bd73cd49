"""The proxy object: a wrapt ``BaseObjectProxy`` whose target is chosen by a policy, per use.

Like wrapt's proxies it owns no visible names: its only state is ``_self_policy``, every other
name is forwarded, and the control API is module-level (``safeclients.checkout`` and friends).

Why every dunder is redefined here: wrapt's C proxy stores one target and reads it directly for
``str()``, operators, ``with`` and friends; only attribute access goes through ``__getattr__``.
Our target differs per thread (``per_thread``) or per call (``pooled``), and must be used under a
lock (``locked``), so every special method the C or pure-Python ``BaseObjectProxy`` defines is
overridden to go through the policy (most of them table-driven, in ``_dunders``);
``tests/lib/test_dunders.py`` checks the list is complete against both implementations. The C
target slot stays empty on purpose: a special method we forgot fails loudly instead of acting on
a stale instance.

Speed: each proxy gets its own subclass. Once the client type is known (a class factory, the
factory's return annotation, or the first instance), its public methods get forwarders in that
subclass (``Policy.forwarder``: the policy's one ``Use``, compiled for that method name, with the
method's own parameters when they are plain), so ``proxy.method`` is found by an ordinary class
lookup instead of a failed lookup plus ``__getattr__``. Names it does not know (instance
attributes, private names, properties) still go through ``__getattr__``. Forwarders never shadow:
they are installed only for names the proxy class does not define. ``proxy.method`` is therefore
the forwarder, not one instance's bound method: kept and called later, or in another thread, it
still takes that thread's instance, the lock, or a checkout.

Calling the proxy: ``callable(proxy)`` gives the client type's answer once that type is known
(a class factory, a return annotation, or the first instance). Before that it is True, and the
first call creates the first instance to find out (``_dunders.first_call_method``): a callable
client is then called through the policy like any method; any other gets a ``TypeError`` that
names its type, and ``callable(proxy)`` becomes False. Introspection never creates a client, so
``callable()`` cannot ask earlier. Each proxy class is named for its client type once known
(``pooled_proxy[Connection]``), so Python's own "object is not callable" names it too.

Which thread runs what: everything here runs in the calling thread; forwarders are installed by
whichever thread first learns the client type (a class attribute store is atomic).
"""

from __future__ import annotations

import contextlib
import inspect
import operator
import types
import weakref
from typing import TYPE_CHECKING, Any, TypeVar

import wrapt

from safeclients import _uses
from safeclients._dunders import (
    call_method,
    callable_type,
    first_call_method,
    install_special_methods,
)
from safeclients._policy import Policy
from safeclients.errors import AsyncUseError

T = TypeVar("T")

_METHOD_TYPES = (
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
)


def policy_of(proxy: object) -> Policy[Any]:
    """The policy behind ``proxy``; TypeError if it is not a safeclients proxy."""
    if not isinstance(proxy, Proxy):
        raise TypeError(f"expected a safeclients proxy, got {type(proxy).__name__}")
    policy: Policy[Any] = object.__getattribute__(proxy, "_self_policy")
    return policy


def _policy(proxy: Proxy) -> Policy[Any]:
    policy: Policy[Any] = object.__getattribute__(proxy, "_self_policy")
    return policy


# wrapt's stubs make the proxy generic, but older wrapt releases (2.1.2, for one) cannot
# subscript it at runtime: subscript for the type checker alone, so those still import.
if TYPE_CHECKING:
    _ProxyBase = wrapt.BaseObjectProxy[Any]
elif not hasattr(wrapt, "BaseObjectProxy"):
    # wrapt 1.x, installed despite our `wrapt>=2.0.0` (pip --no-deps, or pinned after us): say
    # so at import, rather than an AttributeError from inside the package.
    raise ImportError(
        f"safeclients needs wrapt >= 2.0.0 (its proxy subclasses wrapt.BaseObjectProxy, new in "
        f"2.0.0), but this environment has wrapt {getattr(wrapt, '__version__', '?')}: "
        f"pip install 'wrapt>=2.0.0'"
    )
else:
    _ProxyBase = wrapt.BaseObjectProxy


class Proxy(_ProxyBase):
    """Base of every safeclients proxy class; see the module docstring."""

    # The C proxy's own attribute lookup, called through a slot wrapper, costs ~70 ns per access
    # once a subclass defines __getattr__; the generic lookup gives the same answer here (the
    # proxy's own names are all class attributes or `_self_*` entries of its instance dict).
    __getattribute__ = object.__getattribute__

    def __init__(self, policy: Policy[Any]) -> None:
        # Deliberately not BaseObjectProxy.__init__: the stored target stays empty.
        wrapt.BaseObjectProxy.__setattr__(self, "_self_policy", policy)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_self_"):
            raise AttributeError(name)
        policy = _policy(self)
        if name == "__wrapped__":
            # The property raised "no instance yet": Python retries here; never create one.
            return policy.peek()
        if name == "__module__":
            # wrapt's pure-Python proxy reads it from __wrapped__: answer from the type alone.
            if policy.client_type is None:
                raise AttributeError("__module__: no client type known yet")
            return policy.client_type.__module__
        if policy.client_type is None:
            # First use: create an instance where the call will find it (no use of it yet),
            # which installs the forwarders; a method then runs with a single acquisition.
            policy.prime()
            forward = vars(type(self)).get(name)
            if forward is not None:
                return forward.__get__(self, type(self))
        return policy.attribute(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_self_"):
            wrapt.BaseObjectProxy.__setattr__(self, name, value)
        else:
            _policy(self).set_attribute(name, value)

    def __delattr__(self, name: str) -> None:
        if name.startswith("_self_"):
            wrapt.BaseObjectProxy.__delattr__(self, name)
        else:
            _policy(self).del_attribute(name)

    @property
    def __wrapped__(self) -> Any:
        # Introspection (inspect.unwrap, doctest, hasattr) must never create or wait: the
        # calling thread's existing instance, or AttributeError ("nothing wrapped yet").
        return _policy(self).peek()

    @property  # type: ignore[misc]
    def __class__(self) -> Any:
        policy = _policy(self)
        if policy.client_type is None:
            policy.prime()
        return policy.client_type

    @property
    def __doc__(self) -> Any:  # type: ignore[override]
        # The client type's docstring when the type is known: help() creates no client.
        policy = _policy(self)
        if policy.client_type is not None:
            return policy.client_type.__doc__
        return policy.apply(operator.attrgetter("__doc__"))

    @property
    def __dict__(self) -> Any:  # type: ignore[override]
        return _policy(self).apply(vars)

    @property
    def __name__(self) -> Any:  # type: ignore[override]
        return _policy(self).apply(operator.attrgetter("__name__"))

    @property
    def __annotations__(self) -> Any:  # type: ignore[override]
        return _policy(self).apply(operator.attrgetter("__annotations__"))

    # `with proxy:` holds one instance (and, for locked, the lock) from enter to exit: it is the
    # context's pin (``_uses``), so every call through the proxy inside the block runs on it.
    # A client whose own __exit__ closes it (PyMySQL) is discarded, never handed out again.
    def __enter__(self) -> Any:
        policy = _policy(self)
        block = _uses.enter_block(policy)
        try:
            entered = block.pin.obj.__enter__()
        except BaseException as exc:
            _uses.exit_block(block, exc)
            raise
        blocks = policy.blocks
        blocks.set((*blocks.get(), block))
        return self if entered is block.pin.obj else entered

    def __exit__(self, *exc_info: Any) -> Any:
        block = _pop_block(_policy(self))
        try:
            result = block.pin.obj.__exit__(*exc_info)
        except BaseException as exc:
            _uses.exit_block(block, exc)
            raise
        _uses.exit_block(block, exc_info[1], exited=True)
        return result

    async def __aenter__(self) -> Any:
        policy = _policy(self)
        if not policy.holds_across_await:
            # locked: its lock is reentrant in the thread, so every task of the loop would get
            # into the one instance at once.
            raise AsyncUseError(
                f"`async with` on a {policy.kind} proxy would hold its lock across awaits, and "
                f"every task of the thread would get in: use safeclients.per_loop or "
                f"safeclients.pooled for an async client"
            )
        block = await _uses.enter_block_async(policy)
        try:
            entered = await block.pin.obj.__aenter__()
        except BaseException as exc:
            _uses.exit_block(block, exc)
            raise
        blocks = policy.blocks
        blocks.set((*blocks.get(), block))
        return self if entered is block.pin.obj else entered

    async def __aexit__(self, *exc_info: Any) -> Any:
        block = _pop_block(_policy(self))
        try:
            result = await block.pin.obj.__aexit__(*exc_info)
        except BaseException as exc:
            _uses.exit_block(block, exc)
            raise
        _uses.exit_block(block, exc_info[1], exited=True)
        return result

    # Identity, not the instance's: the instance differs per thread (per_thread) or per call
    # (pooled), and a dict keyed by the proxy must find it from every thread.
    def __hash__(self) -> int:
        return object.__hash__(self)

    def __eq__(self, other: object) -> bool:
        return self is other

    def __ne__(self, other: object) -> bool:
        return self is not other

    def __repr__(self) -> str:
        # Not forwarded: repr() runs in debuggers, logs and error messages, and must never
        # wait for a lock or a pool, nor create a client.
        policy = _policy(self)
        client = policy.client_type.__name__ if policy.client_type is not None else "?"
        return f"<safeclients.{policy.kind} proxy at 0x{id(self):x} for {client}>"

    def __copy__(self) -> Any:
        raise TypeError(_NO_COPY)

    def __deepcopy__(self, memo: Any) -> Any:
        raise TypeError(_NO_COPY)

    def __reduce__(self) -> Any:
        raise TypeError(_NO_COPY)

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError(_NO_COPY)

    def __mro_entries__(self, bases: Any) -> Any:
        raise TypeError("a safeclients proxy cannot be used as a base class")


def _pop_block(policy: Policy[Any]) -> _uses.Hold:
    """The innermost `with proxy:` block of this context, taken off its stack."""
    blocks = policy.blocks
    stack = blocks.get()
    if not stack:
        raise RuntimeError("`with proxy:` exited in a context that never entered it")
    blocks.set(stack[:-1])
    return stack[-1]


_NO_COPY = (
    "a safeclients proxy cannot be copied or pickled: it stands for instances that belong to "
    "threads and processes; copy or pickle a client taken with safeclients.checkout()"
)


install_special_methods(Proxy, _policy)

# The names the proxy class itself defines: a forwarder never replaces one of them.
_OWN_NAMES = frozenset(name for klass in Proxy.__mro__ for name in vars(klass))


def make_proxy(policy: Policy[T]) -> T:
    """A proxy over ``policy``, of a fresh subclass that forwarders can be added to; typed as
    the client, which is what it stands for (and what an IDE should see through it)."""
    kind = policy.kind
    # An explicit __dict__ keeps wrapt's pure-Python metaclass from installing its own, which
    # would read the single stored target.
    # __doc__ too: a class statement's missing docstring is a None that would hide ours.
    namespace: dict[str, Any] = {
        "__dict__": vars(Proxy)["__dict__"],
        "__doc__": vars(Proxy)["__doc__"],
        "__module__": __name__,
    }
    if policy.client_type is None:
        # Callable until the first instance says otherwise (see "Calling the proxy" above).
        namespace["__call__"] = first_call_method(_policy)
    metaclass: Any = type(Proxy)
    klass: type[Proxy] = metaclass(f"{kind}_proxy", (Proxy,), namespace)
    proxy = klass.__new__(klass)
    Proxy.__init__(proxy, policy)
    policy.proxy_ref = weakref.ref(proxy)

    def specialise(client_type: type) -> None:
        install_forwarders(klass, policy, client_type)

    policy.respecialise = specialise
    if policy.client_type is not None:
        specialise(policy.client_type)
    if policy.client_type is None or policy.type_is_provisional:
        policy.on_first_instance = specialise
    return proxy  # type: ignore[return-value]  # a Proxy stands for the client


# Proxy class -> the names install_forwarders put there (it may replace those, never others:
# a second call comes when the first instance corrects a provisional type or a health check).
_forwarded: weakref.WeakKeyDictionary[type, set[str]] = weakref.WeakKeyDictionary()

#: Tests switch this off to run the same policy tests over the generic path (``call`` through
#: ``__getattr__``) as over the forwarders: both are compiled from one ``Use``.
FORWARDERS = True


def install_forwarders(klass: type, policy: Policy[Any], client_type: type) -> None:
    """Add forwarders for ``client_type``'s ``__call__`` and public methods to a proxy class.

    Runs once, in whichever thread creates the first instance; a class attribute assignment is
    atomic, so other threads see either the ``__getattr__`` path or the forwarder. Under
    SAFECLIENTS_CHECK the forwarders are the same ones, compiled with the checks in them.
    """
    # The class is named for the client type: Python's own "'pooled_proxy[Connection]'
    # object is not callable" then says which client cannot be called.
    klass.__name__ = klass.__qualname__ = f"{policy.kind}_proxy[{client_type.__qualname__}]"
    if callable_type(client_type):
        setattr(klass, "__call__", call_method(_policy))  # noqa: B010 (a method to mypy)
    elif "__call__" in vars(klass):
        # The first_call_method of a type that was unknown; AttributeError: two threads
        # created first instances at once, and the other one removed it already.
        with contextlib.suppress(AttributeError):
            delattr(klass, "__call__")
    if not FORWARDERS:
        return
    mine = _forwarded.setdefault(klass, set())
    for name in dir(client_type):
        if name.startswith("_") or name in _OWN_NAMES:
            continue
        if name in vars(klass) and name not in mine:
            continue
        try:
            attr = inspect.getattr_static(client_type, name)
        except AttributeError:
            continue
        if policy.async_gets and inspect.iscoroutinefunction(attr):
            setattr(klass, name, policy.async_forwarder(name))
        elif isinstance(attr, _METHOD_TYPES):
            forward = policy.forwarder(name, attr)
            # inspect.signature() and help() follow __wrapped__ to the client's own method.
            forward.__wrapped__ = attr  # type: ignore[attr-defined]
            forward.__doc__ = getattr(attr, "__doc__", None)
            setattr(klass, name, forward)
        else:
            continue
        mine.add(name)


__all__ = ["Proxy", "make_proxy", "policy_of"]
