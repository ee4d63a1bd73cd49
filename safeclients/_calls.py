"""``CallThrough``: what ``proxy.name`` returns for a callable with no compiled forwarder.

Which thread runs what: the calling thread; each call is one use of the policy.
"""

from __future__ import annotations

from typing import Any, Protocol


class Caller(Protocol):
    """What a call-through needs from its policy (``_policy.Policy`` is one)."""

    @property
    def kind(self) -> str: ...

    def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any: ...

    def apply(self, func: Any, /, *args: Any) -> Any: ...


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

    def __init__(self, policy: Caller, path: tuple[str, ...], seen: object) -> None:
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


__all__ = ["CallThrough"]
