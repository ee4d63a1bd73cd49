"""Factories: what a policy is given, checked at the edge, and the decorator body every policy
shares (``proxy_or_decorator``).

Which thread runs what: all of it runs where a proxy is made (often at import, in the master
before the fork).
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from safeclients.errors import FactoryError

T = TypeVar("T")
F = TypeVar("F")
R = TypeVar("R")


def check_factory(kind: str, factory: object) -> None:
    """Refuse a non-callable factory at proxy creation, with a sentence."""
    if not callable(factory):
        raise FactoryError(
            f"{kind}() needs a zero-argument callable that returns a client, got "
            f"{factory!r} ({type(factory).__name__})"
        )


def annotated_type(factory: Callable[[], Any]) -> type | None:
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


#: The default of ``locked``'s and ``guarded``'s first argument: "used as a decorator with
#: arguments". An explicit None is refused (it is almost always a client that failed to build).
NOT_GIVEN: Any = type("NotGiven", (), {"__repr__": lambda self: "NOT_GIVEN"})()


def is_factory(obj: object) -> bool:
    """A function, method, partial or class is a factory; anything else is an instance."""
    return isinstance(
        obj,
        (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType, functools.partial),
    )


T_co = TypeVar("T_co", covariant=True)


class FunctionFactory(Protocol[T_co]):
    """For the type checker: a function, method or lambda returning a client, the part of
    ``is_factory`` that is neither a class nor a ``functools.partial``.

    ``locked``'s and ``guarded``'s overloads take it instead of ``Callable[[], T]``, which an
    *instance* with a zero-argument ``__call__`` also matches: mypy then typed
    ``locked(instance)`` as the call's result. A callable instance has no ``__code__``; a
    function, a method, a lambda or a ``Callable`` value has (mypy's ``builtins.function``).
    """

    @property
    def __code__(self) -> types.CodeType: ...

    def __call__(self) -> T_co: ...


def instance_or_factory(obj_or_factory: Any) -> tuple[Callable[[], Any] | None, Any]:
    """Split ``locked``'s and ``guarded``'s argument into (factory, None) or (None, instance)."""
    if is_factory(obj_or_factory):
        return obj_or_factory, None
    return None, obj_or_factory


def proxy_or_decorator(factory: F | None, make: Callable[[F], R]) -> R | Callable[[F], R]:
    """The body of every policy function: ``make(factory)`` when given a factory, else the
    decorator that will (``@policy(option=...)``). ``make`` builds the policy and its proxy."""
    if factory is None:
        return make
    return make(factory)


__all__ = [
    "NOT_GIVEN",
    "FunctionFactory",
    "check_factory",
    "annotated_type",
    "is_factory",
    "instance_or_factory",
    "proxy_or_decorator",
]
