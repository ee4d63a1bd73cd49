"""The special methods of a proxy, table-driven: each one runs on an instance held by the policy.

Python looks special methods up on the type, never through ``__getattr__``, and wrapt's C proxy
implements them by reading its single stored target. ``install_special_methods`` gives the proxy
base class one method per name below, each calling ``policy.apply(func, ...)`` so the operation
runs on the calling thread's instance (``per_thread``), under the lock (``locked``), on a
checked-out instance (``pooled``), or as one watched use (``guarded``).

Not here (they need more than one line, see ``_proxy.Proxy``): attribute access, ``__class__``,
``__repr__`` (never forwarded: it must not wait), ``with``/``async with`` (held from enter to
exit), and copy/pickle (refused).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

from safeclients._policy import Policy

PolicyOf = Callable[[Any], Policy[Any]]


def _contains(obj: Any, item: Any) -> bool:
    return item in obj


def _instancecheck(obj: Any, instance: Any) -> bool:
    return isinstance(instance, obj)


def _subclasscheck(obj: Any, subclass: Any) -> bool:
    return issubclass(subclass, obj)


UNARY: dict[str, Callable[[Any], Any]] = {
    "__str__": str,
    "__bytes__": bytes,
    "__bool__": bool,
    "__len__": len,
    "__iter__": iter,
    "__next__": next,
    "__reversed__": reversed,
    "__dir__": dir,
    "__neg__": operator.neg,
    "__pos__": operator.pos,
    "__abs__": abs,
    "__invert__": operator.invert,
    "__int__": int,
    "__float__": float,
    "__complex__": complex,
    "__index__": operator.index,
    "__trunc__": math.trunc,
    "__floor__": math.floor,
    "__ceil__": math.ceil,
}

ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "matmul": operator.matmul,
    "truediv": operator.truediv,
    "floordiv": operator.floordiv,
    "mod": operator.mod,
    "divmod": divmod,
    "pow": pow,
    "lshift": operator.lshift,
    "rshift": operator.rshift,
    "and": operator.and_,
    "xor": operator.xor,
    "or": operator.or_,
}

INPLACE: dict[str, Callable[[Any, Any], Any]] = {
    "add": operator.iadd,
    "sub": operator.isub,
    "mul": operator.imul,
    "matmul": operator.imatmul,
    "truediv": operator.itruediv,
    "floordiv": operator.ifloordiv,
    "mod": operator.imod,
    "pow": operator.ipow,
    "lshift": operator.ilshift,
    "rshift": operator.irshift,
    "and": operator.iand,
    "xor": operator.ixor,
    "or": operator.ior,
}

BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "__lt__": operator.lt,
    "__le__": operator.le,
    "__gt__": operator.gt,
    "__ge__": operator.ge,
    "__contains__": _contains,
    "__getitem__": operator.getitem,
    "__delitem__": operator.delitem,
    "__instancecheck__": _instancecheck,
    "__subclasscheck__": _subclasscheck,
    "__format__": format,
    **{f"__{name}__": func for name, func in ARITHMETIC.items()},
}


def _unary(policy_of: PolicyOf, func: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def method(self: Any) -> Any:
        return policy_of(self).apply(func)

    return method


def _binary(policy_of: PolicyOf, func: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def method(self: Any, other: Any) -> Any:
        if other is self:
            # One instance on both sides: a second acquire could wait for ourselves (pooled).
            return policy_of(self).apply(lambda obj: func(obj, obj))
        return policy_of(self).apply(func, other)

    return method


def _reflected(policy_of: PolicyOf, func: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def method(self: Any, other: Any) -> Any:
        return policy_of(self).apply(lambda obj: func(other, obj))

    return method


def _inplace(policy_of: PolicyOf, func: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def method(self: Any, other: Any) -> Any:
        def run(obj: Any) -> Any:
            result = func(obj, other)
            # Mutated in place: the name keeps the proxy; otherwise it gets the new value.
            return self if result is obj else result

        return policy_of(self).apply(run)

    return method


def _round(policy_of: PolicyOf) -> Callable[..., Any]:
    def method(self: Any, *ndigits: Any) -> Any:
        return policy_of(self).apply(round, *ndigits)

    return method


def _setitem(policy_of: PolicyOf) -> Callable[[Any, Any, Any], None]:
    def method(self: Any, key: Any, value: Any) -> None:
        policy_of(self).apply(operator.setitem, key, value)

    return method


def _call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return obj(*args, **kwargs)


def call_method(policy_of: PolicyOf) -> Callable[..., Any]:
    """``__call__``, installed per proxy class once the client type is known to be callable."""

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return policy_of(self).apply(_call, args, kwargs)

    return method


def first_call_method(policy_of: PolicyOf) -> Callable[..., Any]:
    """``__call__`` of a proxy class whose client type is not known yet (a factory without a
    return annotation): whether the client is callable is learnt by creating the first one.

    Runs in the calling thread. ``prime()`` creates an instance where the call will find it;
    that installs ``call_method`` in the proxy class, or removes this method when the type is
    not callable (``_proxy.install_forwarders``). This call then goes through the policy like
    any other, or raises a ``TypeError`` naming the client type; the instance is not taken for
    a client that cannot be called.
    """

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        policy = policy_of(self)
        if policy.client_type is None:
            policy.prime()
        client_type = policy.client_type
        # None only when priming created nothing (a disposed pool): apply raises the reason.
        if client_type is not None and not callable_type(client_type):
            raise TypeError(
                f"the client of this {policy.kind} proxy, a {client_type.__module__}."
                f"{client_type.__qualname__}, is not callable"
            )
        return policy.apply(_call, args, kwargs)

    return method


def callable_type(client_type: type) -> bool:
    """Whether instances of ``client_type`` can be called (``object`` defines no ``__call__``)."""
    return any("__call__" in vars(klass) for klass in client_type.__mro__ if klass is not object)


def install_special_methods(klass: type, policy_of: PolicyOf) -> None:
    """Give ``klass`` (the proxy base) every special method in the tables above."""
    for name, one in UNARY.items():
        setattr(klass, name, _unary(policy_of, one))
    for name, two in BINARY.items():
        setattr(klass, name, _binary(policy_of, two))
    for name, two in ARITHMETIC.items():
        setattr(klass, f"__r{name}__", _reflected(policy_of, two))
    for name, two in INPLACE.items():
        setattr(klass, f"__i{name}__", _inplace(policy_of, two))
    setattr(klass, "__round__", _round(policy_of))  # noqa: B010 (klass is any type to mypy)
    setattr(klass, "__setitem__", _setitem(policy_of))  # noqa: B010
