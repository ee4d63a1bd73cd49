"""A call that cannot get its instance now without blocking: it runs when it is awaited.

Two cases reach here, both from a policy's compiled ``get`` (the forwarders and ``call``):

* a ``per_loop`` proxy called with no running loop: ``asyncio.run(client.get(1))`` and
  ``loop.run_until_complete(client.get(i))`` make the coroutine before its loop runs;
* a ``pooled`` proxy called inside a running loop with every instance in use, for a method that
  is a plain function returning a coroutine (redis.asyncio's commands): waiting for a free
  instance there would freeze every task of the loop until ``PoolTimeout``.

The ``get`` then binds a :class:`Deferrer` as the instance: the call ``obj.name(*args)`` on it
makes a :class:`PendingCall`, which the compiled path returns as it is (it holds no instance:
``PLAIN_OR_PENDING``). A ``PendingCall`` is a coroutine (``asyncio.run`` and ``create_task``
accept it): awaited, it takes the instance inside the loop that runs it (``policy.aget()``,
which never blocks a loop), makes the call there, and awaits what the call returned, all as
the compiled path would have done (``escaped``: the use lasts until the awaitable is done). It
also keeps the two other interfaces an async client's call may have: ``async with
r.pipeline() as p`` (``__aenter__``) and ``async for row in client.rows()`` (``__aiter__``).

Whether a method returns an awaitable is only known once it has run, so every method call is
deferred there; a sync method's deferred call is therefore only good for ``await`` (which gives
its result): reading an attribute of it raises the policy's error (``NoRunningLoopError``,
``WouldBlockLoopError``) with the way out. A block or a special method that cannot have an
instance raises that error at once. A deferred call that is never awaited holds nothing.

Which thread runs what: the ``PendingCall`` is made in the calling thread; it runs in the
thread of the loop that awaits it.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Coroutine, Generator
from typing import Any, Protocol

from safeclients._escape import PLAIN, Escaping, escaped
from safeclients.errors import (
    AsyncUseError,
    FactoryError,
    NoRunningLoopError,
    WouldBlockLoopError,
)


class Deferring(Escaping, Protocol):
    """What a deferred call needs from its policy (``_policy.Policy`` is one)."""

    async def aget(self) -> tuple[Any, Any]: ...


class Deferrer:
    """Bound as the instance by a ``get`` that cannot have one now: every method call on it
    makes a :class:`PendingCall` of that method."""

    __slots__ = ("_policy", "_error")

    def __init__(self, policy: Deferring, error: type[Exception]) -> None:
        self._policy = policy
        self._error = error

    def __getattr__(self, name: str) -> Any:
        policy, error = self._policy, self._error

        def pending(*args: Any, **kwargs: Any) -> PendingCall:
            return PendingCall(policy, name, args, kwargs, error)

        return pending


class NoToken:
    """The token a deferring ``get`` binds: the use holds nothing, so its ``put`` gives nothing
    back (``pooled``'s put sees neither its free list nor a pin; ``lost`` may be set)."""

    __slots__ = ("lost",)


class PendingCall(Coroutine[Any, Any, Any]):
    """``proxy.name(*args, **kwargs)``, made where no instance could be had: run when awaited
    (or entered with ``async with``, or iterated with ``async for``) in a running loop."""

    __slots__ = ("_policy", "_name", "_args", "_kwargs", "_error", "_coroutine", "_entered")

    def __init__(
        self,
        policy: Deferring,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        error: type[Exception],
    ) -> None:
        self._policy = policy
        self._error = error
        self._name = name
        self._args = args
        self._kwargs = kwargs
        self._coroutine: Coroutine[Any, Any, Any] | None = None
        self._entered: Any = None

    async def _call(self) -> Any:
        """Take the instance in the running loop and make the call, as the compiled path does:
        a plain result gives the instance back, anything else keeps it (``escaped``)."""
        policy = self._policy
        obj, token = await policy.aget()
        # No await from here to the put or the hold: a cancellation cannot land in between.
        try:
            result = getattr(obj, self._name)(*self._args, **self._kwargs)
        except BaseException as exc:
            policy.put(obj, token, policy.is_broken(exc, obj))
            raise
        if type(result) in PLAIN:
            policy.put(obj, token, False)
            return result
        return escaped(policy, obj, token, result, self._name, None)

    async def _run(self) -> Any:
        result = await self._call()
        if inspect.isawaitable(result):
            return await result
        return result

    def _started(self) -> Coroutine[Any, Any, Any]:
        coroutine = self._coroutine
        if coroutine is None:
            coroutine = self._coroutine = self._run()
        return coroutine

    # -- a coroutine (collections.abc.Coroutine: asyncio.run and create_task accept it) -----

    def __await__(self) -> Generator[Any, None, Any]:
        return self._started().__await__()

    def send(self, value: Any) -> Any:
        return self._started().send(value)

    def throw(self, *exc_info: Any) -> Any:
        return self._started().throw(*exc_info)

    def close(self) -> None:
        if self._coroutine is not None:
            self._coroutine.close()

    # -- an async context manager (redis.asyncio's pipeline, aiohttp's request) -----------------

    async def __aenter__(self) -> Any:
        result = await self._call()
        enter = getattr(result, "__aenter__", None)
        if enter is None:
            if inspect.iscoroutine(result):
                result.close()  # the wrapper is never to be awaited: its use ends
            raise AsyncUseError(
                f"{self._name}() was used in `async with`, and what it returned "
                f"({type(result).__name__}) is not an async context manager"
            )
        self._entered = result
        return await enter()

    async def __aexit__(self, *exc_info: Any) -> Any:
        entered, self._entered = self._entered, None
        return await entered.__aexit__(*exc_info)

    # -- an async iterator (an async generator method) ------------------------------------------

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        result = await self._call()
        iterator = result.__aiter__()
        try:
            async for item in iterator:
                yield item
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()

    def __getattr__(self, name: str) -> Any:
        # Only names a PendingCall lacks get here. asyncio and inspect probe a coroutine's
        # private and cr_* names with getattr(..., default): those stay AttributeErrors.
        if name.startswith(("_", "cr_", "gi_", "ag_")):
            raise AttributeError(name)
        # A public name: the caller took the pending call for the call's result.
        raise self._misused(f"reading .{name} from it")

    def _misused(self, use: str) -> Exception:
        """The error for using the pending call as the call's value (a sync method's result
        is only had by awaiting it): never a silent wrong value such as its repr or True."""
        kind, why = self._policy.kind, _WHY.get(self._error, "blocking")
        return self._error(
            f"{self._name}() on a {kind} proxy could not get an instance without "
            f"{why}, so it was deferred: it is a pending call, good for "
            f"`await`, `async with` and `async for` in a running loop; {use} "
            f"needs the call's result (await it first)"
        )

    # -- used as the call's value: refused (repr stays, for debuggers and logs) ------------------

    def __str__(self) -> str:
        raise self._misused("str() of it")

    def __format__(self, spec: str) -> str:
        raise self._misused("formatting it")

    def __bool__(self) -> bool:
        raise self._misused("its truth value")

    def __eq__(self, other: object) -> bool:
        raise self._misused("comparing it")

    def __ne__(self, other: object) -> bool:
        raise self._misused("comparing it")

    __hash__ = object.__hash__  # asyncio keys tasks by their coroutine: identity, as before

    def __len__(self) -> int:
        raise self._misused("len() of it")

    def __iter__(self) -> Any:
        raise self._misused("iterating it")

    def __contains__(self, item: object) -> bool:
        raise self._misused("`in` on it")

    def __getitem__(self, key: Any) -> Any:
        raise self._misused("indexing it")

    def __int__(self) -> int:
        raise self._misused("int() of it")

    def __float__(self) -> float:
        raise self._misused("float() of it")

    def __index__(self) -> int:
        raise self._misused("using it as an index")

    def __repr__(self) -> str:
        return f"<safeclients pending call {self._name}() of a {self._policy.kind} proxy>"


# Why a call was deferred, by the error its misuse raises.
_WHY: dict[type[Exception], str] = {
    NoRunningLoopError: "a running event loop (per_loop keeps one instance per loop)",
    WouldBlockLoopError: "blocking the running event loop (every instance is in use)",
    FactoryError: "awaiting its async factory (the loop's instance is being made)",
}


#: What the compiled paths return as it is: plain values, and a pending call (no instance).
PLAIN_OR_PENDING: frozenset[type] = PLAIN | {PendingCall}


__all__ = ["NoToken", "Deferrer", "PendingCall", "PLAIN_OR_PENDING"]
