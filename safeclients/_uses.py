"""Uses that outlive a call: the one home of pins, holds and blocks.

A plain call through a proxy is one use: the policy gets an instance, the call runs, the policy
gets it back. Some uses last longer:

* a **block**: ``with proxy:`` and ``with safeclients.checkout(proxy) as client:``;
* a **derived object**: a cursor, channel or pipeline a call returned (``_escape`` wraps it), a
  generator or iterator, an awaitable not yet awaited.

Each such use is a :class:`Hold`. The holds of one context on one proxy share a :class:`Pin`:
the instance that context holds, given back to the policy when the last of its holds ends. While
a pin is open, the context's other calls through the proxy run on the pinned instance (the
policies' compiled ``get`` looks at it first, ``pooled`` included), so ``db.commit()`` inside a
cursor's life commits on the cursor's connection, and ``with db: db.execute(); db.commit()``
runs on one connection. A bound method kept earlier (``commit = db.commit``) is the proxy's
forwarder: it asks for the pin when it is called, not when it was looked up.

Context, not thread
-------------------
A context is a thread, a greenlet (after gevent's patch, ``threading.get_ident`` is the
greenlet's) or an asyncio task. The pin lives in a ``ContextVar`` of the policy: threads and
greenlets each have their own context; a task starts with a *copy* of its creator's, so a pin
also records its owner (ident and task) and a copied pin is never used by another context: two
tasks of one thread never share a pinned instance.

Ending, from anywhere
---------------------
A hold ends exactly once: its block exits, its object is closed or exhausted, or it is
collected (``Derived.__del__``, in whichever thread drops the last reference). Ending it from
another thread is safe: the pin's count is changed under ``_count_lock`` and the policy's
``put`` works from any thread (``locked``'s lock is a plain lock with a recorded owner, not an
``RLock``). Known limit: a derived object collected in another thread while its own context is
still inside a call on the pinned instance gives the instance back under that call; only an
object handed to another thread and dropped there can do that.

A lost pin
----------
When an error shows the pinned instance dead (``is_broken``: a derived object's error, a call
of the context on the pinned instance, an error escaping the block), the pin is *lost*
(:func:`lose`): the policy discards the instance (``on_lost``), and the rest of the pin's uses
in this context raise ``InstanceDiscardedError`` (:func:`refuse_lost`, from the policy's
``get``) instead of running on a new instance: the block began a transaction (or a cursor's
statement) on the dead connection, and continuing it on a fresh one would commit its second
half alone. The pin's end clears it; the next use gets a new instance. ``policy.lost_open``
counts the lost pins still open (a policy whose ``get`` has no pin check looks at it).

Across a fork
-------------
A pin records the fork generation it began in (``_fork.GENERATION``). Ended in a child, it gives
nothing back and counts nothing: the child's reset already dropped the inherited instance, and
its lock or slot belongs to the parent. The parent's instance is never closed by the child.

Which thread runs what: everything runs in the context that uses the proxy, except a hold's end,
which may run wherever the derived object is closed or collected.
"""

from __future__ import annotations

import inspect
import threading
import types
from asyncio import current_task
from asyncio.events import _get_running_loop
from contextvars import ContextVar
from typing import Any, Protocol

from safeclients import _fork
from safeclients.errors import CrossThreadUseError, InstanceDiscardedError, OutlivedUseError


class Holder(Protocol):
    """What this module needs from a policy (``_policy.Policy`` is one)."""

    @property
    def kind(self) -> str: ...

    pins: ContextVar[Pin | None]
    held: dict[int, int]
    lost_open: int  # lost pins, and instances in `gone`, still open (guarded by _count_lock)
    gone: set[int]  # ids of held instances another context discarded (guarded by _count_lock)

    @property
    def track_holds(self) -> bool:
        """Whether ``held`` is kept (per_thread's health checks read it)."""

    @property
    def pin_hook(self) -> bool:
        """Whether ``on_pin`` is called for each new pin (locked: who holds its lock)."""

    def get(self) -> tuple[Any, Any]: ...

    async def aget(self) -> tuple[Any, Any]: ...

    def put(self, obj: Any, token: Any, broken: bool) -> None: ...

    def is_broken(self, exc: BaseException, obj: Any) -> bool: ...

    def bind_awaited(self, obj: Any) -> None:
        """In the loop that awaits a use of ``obj``: bind it to that loop (``_policy``)."""

    def on_pin(self, pin: Pin) -> None: ...

    def on_lost(self, obj: Any) -> None:
        """A pin on ``obj`` was lost: discard it now (or, pooled, at the pin's end)."""


# Guards every Pin.count and the policies' `held` tables: a hold may end in another thread.
_count_lock = threading.Lock()


def running_task() -> object:
    """The running asyncio task of this thread, or None outside one."""
    if _get_running_loop() is None:
        return None
    return current_task()


class Hold:
    """One use that outlives its call, on a pin; ends exactly once.

    ``ident`` is the creating thread's (or greenlet's) ident, the only thing the derived
    objects' compiled forwarders compare on every call; a hold made inside an asyncio task
    stores -1 there instead, so every call takes the slow check (``refuse``), which compares
    tasks too. The first use of a pin is the :class:`Pin` itself (one object, not two, on the
    path every cursor takes); later uses of it are plain holds.
    """

    __slots__ = ("pin", "name", "open", "ident", "broken")

    pin: Pin

    def __init__(self, pin: Pin, name: str | None) -> None:
        self.pin = pin
        self.name = name
        self.open = True
        self.broken = False
        self.ident = -1 if pin.task is not None else pin.owner

    def refuse(self, what: str) -> None:
        """Slow check of a call on the derived object: raise unless it is open and ours."""
        pin = self.pin
        if not self.open:
            raise OutlivedUseError(
                f"{what} was used after its use of the {pin.policy.kind} proxy's instance "
                f"ended (its `with` block exited, it was closed or exhausted): the instance is "
                f"back with the policy and may be another thread's by now; make a new one"
            )
        me = threading.get_ident()
        task = running_task()
        if pin.owner == me and (pin.task is None or pin.task is task):
            return
        where = f"thread {me}" if task is None else f"an asyncio task of thread {me}"
        raise CrossThreadUseError(
            f"{what} is bound to the instance that thread {pin.owner} holds (from "
            f"{self.name or 'a call'}()), and {where} used it: a derived object (cursor, "
            f"channel, pipeline, generator) belongs to the thread or task that made it; make a "
            f"new one there"
        )

    def noted(self, exc: BaseException) -> None:
        """An error from the derived object counts for its instance (``discard_on``); closing a
        generator early (``GeneratorExit``) is no error. A broken one loses the pin now: the
        rest of its uses refuse (see the module)."""
        pin = self.pin
        obj = pin.obj
        if not isinstance(exc, GeneratorExit) and pin.policy.is_broken(exc, obj):
            self.broken = True
            if lose(pin) and obj is not None:
                pin.policy.on_lost(obj)

    def joined(self, name: str | None) -> Hold:
        """Another use on the same pin (a derived object's own derived result)."""
        pin = self.pin
        with _count_lock:
            pin.count += 1
        return Hold(pin, name)

    def release(self) -> None:
        """End this use (idempotent; any thread); the pin's last use gives the instance back."""
        pin = self.pin
        with _count_lock:
            if not self.open:
                return
            self.open = False
            if self.broken:
                _lose(pin)
            pin.count -= 1
            obj = pin.obj
            if pin.count > 0 or obj is None:
                return
            token = pin.token
            pin.obj = pin.token = None
            policy = pin.policy
            if pin.generation != _fork.GENERATION[0]:
                return  # begun before a fork: the child's reset dropped it (see module)
            if pin.lost:
                policy.lost_open -= 1
            if policy.track_holds:
                held = policy.held
                left = held.get(id(obj), 1) - 1
                if left > 0:
                    held[id(obj)] = left
                else:
                    held.pop(id(obj), None)
                    if id(obj) in policy.gone:
                        policy.gone.discard(id(obj))
                        policy.lost_open -= 1
        policy.put(obj, token, pin.lost)


class Pin(Hold):
    """The instance one context holds for its open uses; given back when the last one ends.

    It is also the first of those uses (see ``Hold``)."""

    __slots__ = ("policy", "obj", "token", "count", "lost", "generation", "owner", "task")

    def __init__(
        self, policy: Holder, obj: Any, token: Any, registered: bool, name: str | None
    ) -> None:
        self.policy = policy
        self.obj = obj  # None once given back
        self.token = token  # what the policy's put needs (the free list, the lock, ...)
        self.count = 1  # open holds; guarded by _count_lock
        self.lost = False  # one of its uses was broken: discard at the end
        self.generation = _fork.GENERATION[0]
        self.owner = threading.get_ident()
        self.task = running_task() if registered else None
        # As the pin's first use:
        self.pin = self
        self.name = name
        self.open = True
        self.broken = False
        self.ident = self.owner if self.task is None else -1

    def mine(self) -> bool:
        """Whether the calling context owns this open pin (the compiled gets ask): it is the
        pin registered in this context (a new thread, even one that reuses a dead thread's
        ident, has a context of its own), made by this thread and task (a task or a thread
        that starts with a copy of the context sees the pin, and must not use it)."""
        return (
            self.obj is not None
            and self.policy.pins.get() is self
            and self.owner == threading.get_ident()
            and (self.task is None or self.task is running_task())
        )


def lose(pin: Pin) -> bool:
    """Mark ``pin`` lost (its instance is dead: see the module); True the first time."""
    with _count_lock:
        return _lose(pin)


def _lose(pin: Pin) -> bool:
    """``lose`` with ``_count_lock`` held. Only an open pin of this process is counted in
    ``lost_open`` (its end uncounts it)."""
    if pin.lost:
        return False
    pin.lost = True
    if pin.obj is not None and pin.generation == _fork.GENERATION[0]:
        pin.policy.lost_open += 1
    return True


def lose_pinned(policy: Holder, obj: object) -> None:
    """A call on ``obj`` was broken (the policy's discard, slow path): if the calling context's
    open pin holds ``obj``, that pin is lost. Where instances are shared between contexts
    (``per_process``, with ``track_holds``), the other contexts' pins on it are lost too:
    ``obj`` joins ``gone`` until the last of them ends."""
    pin = policy.pins.get()
    if pin is not None and pin.obj is obj and pin.mine():
        lose(pin)
    if policy.track_holds:
        with _count_lock:
            if id(obj) in policy.held and id(obj) not in policy.gone:
                policy.gone.add(id(obj))
                policy.lost_open += 1


def refuse_lost(policy: Holder) -> None:
    """Raise ``InstanceDiscardedError`` if the calling context's open pin is lost: the policy's
    ``get`` must not hand it a new instance in the middle of its block or cursor."""
    pin = policy.pins.get()
    if pin is None or pin.obj is None or not (pin.lost or id(pin.obj) in policy.gone):
        return
    if pin.mine():
        client = type(pin.obj).__name__
        raise InstanceDiscardedError(
            f"the {client} instance that this {policy.kind} proxy's open block or derived "
            f"object (from {pin.name or 'a block'}) holds was discarded after an error that "
            f"means its connection is dead: the rest of the block would run on a new "
            f"connection, outside the transaction it began there. Leave the block (close the "
            f"cursor) and start the work again"
        )


def held_now(policy: Holder, obj: object) -> bool:
    """Whether an open hold (any context) keeps ``obj``: health checks never retire it then
    (kept only by policies with ``track_holds``)."""
    return id(obj) in policy.held


def hold(policy: Holder, obj: Any, token: Any, name: str | None, *, register: bool = True) -> Hold:
    """Extend the use that just got ``(obj, token)`` past its call: join the context's pin (the
    token is one when the call ran on it), or open a pin. ``register=False`` (an awaitable,
    which may be awaited in another task): the pin is not the context's, so the context's
    other calls do not run on it."""
    if type(token) is Pin:
        # The call ran on the context's pin (pooled): the pin covers the result; the call's own
        # use ends (a Pin token gives nothing back; check mode's tracker is left).
        with _count_lock:
            token.count += 1
        policy.put(obj, token, False)
        return Hold(token, name)
    current = policy.pins.get()
    if current is not None and current.obj is obj and current.mine():
        # The call ran on the context's pinned instance with a token of its own (locked's
        # lock, taken again; per_thread's None): that use ends, the pin covers the result.
        with _count_lock:
            current.count += 1
        policy.put(obj, token, False)
        return Hold(current, name)
    pin = Pin(policy, obj, token, register, name)
    if policy.track_holds:
        with _count_lock:
            held = policy.held
            held[id(obj)] = held.get(id(obj), 0) + 1
    if register:
        policy.pins.set(pin)  # a pin given back stays here, inert (obj None), until replaced
    if policy.pin_hook:
        policy.on_pin(pin)
    return pin


# -- blocks: `with proxy:` and checkout() ---------------------------------------------------------


def enter_block(policy: Holder) -> Hold:
    """Start a block: get an instance (the pinned one, if the context has one) and hold it."""
    obj, token = policy.get()
    try:
        return hold(policy, obj, token, None)
    except BaseException:
        policy.put(obj, token, False)
        raise


async def enter_block_async(policy: Holder) -> Hold:
    """``enter_block`` for ``async with``: the instance is taken with ``aget``, which waits in
    the loop (``pooled``), never blocking it."""
    obj, token = await policy.aget()
    try:
        return hold(policy, obj, token, None)
    except BaseException:
        policy.put(obj, token, False)
        raise


def exit_block(block: Hold, error: BaseException | None, *, exited: bool = False) -> None:
    """End a block; an error that escaped it counts for the instance (``discard_on``).
    ``exited``: the client's own ``__exit__`` ran (``with proxy:``); if that closed it
    (PyMySQL, psycopg 3), the instance is discarded, never handed out again."""
    if error is not None:
        block.noted(error)
    if exited and looks_closed(block.pin.obj):
        block.broken = True
    block.release()


def looks_closed(obj: object) -> bool:
    """Whether a client says it is closed, by the usual flags: ``open`` false (PyMySQL,
    mysqlclient), ``closed`` true (psycopg 2 and 3). A client's own ``__exit__`` closes some
    (PyMySQL, psycopg 3, mysqlclient) and only ends the transaction of others (sqlite3,
    psycopg2). Only the instance's own state counts: an attribute of its ``__dict__``, or a
    property or slot of its class; a plain class attribute (a counter of closes) does not."""
    return _flag(obj, "open") is False or _flag(obj, "closed") is True


def _flag(obj: object, name: str) -> bool | None:
    """``obj.name`` as a boolean if it is the instance's own bool or int state, else None."""
    try:
        own = name in vars(obj)
    except TypeError:
        own = False
    if not own:
        try:
            static = inspect.getattr_static(type(obj), name)
        except AttributeError:
            return None
        if not hasattr(static, "__get__") or isinstance(static, (types.FunctionType, type)):
            return None  # a plain class attribute, or a method: not the instance's state
    try:
        value = getattr(obj, name)
    except Exception:
        return None
    return bool(value) if type(value) in (bool, int) else None


# Per policy and context: the `with proxy:` blocks open, innermost last. A tuple, never mutated:
# a task's copy of the context must not see another task's blocks.
def block_stack(kind: str) -> ContextVar[tuple[Hold, ...]]:
    return ContextVar(f"safeclients.{kind}.blocks", default=())


__all__ = [
    "running_task",
    "Pin",
    "Hold",
    "hold",
    "held_now",
    "lose",
    "lose_pinned",
    "refuse_lost",
    "enter_block",
    "enter_block_async",
    "exit_block",
    "looks_closed",
    "block_stack",
]
