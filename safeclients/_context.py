"""The calling context's identity: an asyncio task, else the thread or greenlet.

Who is "inside" a client is a question about contexts, not OS threads. Two asyncio tasks of one
thread overlap inside one instance whenever the first awaits in the middle of its use (an
asyncpg query, a held awaitable not yet finished); two greenlets of one OS thread do the same
whenever the first yields to the hub. ``threading.get_ident()`` sees neither pair: it is the one
OS thread's ident for every task of its loop, and, before gevent's patch, for every greenlet.

:func:`current` answers for all three: the running task when the calling thread runs an
asyncio loop and is inside a task; else, once gevent has patched ``threading`` (``_green`` calls
:func:`green` where ``patch_all()`` runs, before any request), the current greenlet; else
``threading.get_ident()``. Nothing made before the patch keeps a stale answer: every caller asks
this module at each use. The check mode's tracker (``_check``) and ``guarded`` key their "who
is inside" tables by it.

A task is used as itself (hashed by identity, held only while it is inside a use), never by
``id(task)``, which a later task may reuse.

Which thread runs this: whichever context asks, on every checked or guarded use.
"""

from __future__ import annotations

import asyncio
import threading
import traceback
from asyncio.events import _get_running_loop
from collections.abc import Callable
from types import FrameType
from typing import Any, Union

#: A context: an asyncio task, a greenlet (typed as object: greenlet is optional), or a
#: thread's ident.
Context = Union[int, "asyncio.Task[object]", object]


# The current greenlet's getter once gevent has patched ``threading`` (``_green`` sets it), so
# a context is the greenlet itself: its name and its suspended frame are then at hand for a
# message, where an ident would name neither.
_getcurrent: list[Callable[[], object] | None] = [None]


def current() -> Context:
    """The calling context: its asyncio task inside a running loop, else its greenlet (once
    gevent has patched ``threading``), else its thread's ident."""
    if _get_running_loop() is not None:
        task = asyncio.current_task()
        if task is not None:
            return task
    getcurrent = _getcurrent[0]
    if getcurrent is not None:
        return getcurrent()
    return threading.get_ident()


def green(getcurrent: Callable[[], object]) -> None:
    """gevent patched ``threading`` (``_green.renew_all``): contexts are greenlets now."""
    _getcurrent[0] = getcurrent


def thread() -> int:
    """The calling thread's (greenlet's, once patched) ident, looked up at each call."""
    return threading.get_ident()


def describe(context: Context) -> str:
    """How a context reads in a message: ``thread 'name' (ident N)``, ``asyncio task 'name'``
    or ``greenlet 'name'``."""
    if isinstance(context, int):
        name = "?"
        for thread in threading.enumerate():
            if thread.ident == context:
                name = thread.name
                break
        return f"thread {name!r} (ident {context})"
    if isinstance(context, asyncio.Task):
        return f"asyncio task {context.get_name()!r}"
    name = getattr(context, "name", None) or f"{type(context).__name__} at {id(context):#x}"
    return f"greenlet {name!r}"


def stack(context: Context, frames: dict[int, FrameType]) -> list[FrameType]:
    """A context's frames, outermost first: a thread's (``frames`` is
    ``sys._current_frames()``), a suspended task's (its chain of awaits: ``Task.get_stack``
    gives only the outermost coroutine's frame), or a suspended greenlet's (``gr_frame``)."""
    if isinstance(context, int):
        frame = frames.get(context)
    elif isinstance(context, asyncio.Task):
        found: list[FrameType] = []
        awaiting: Any = context.get_coro()
        while awaiting is not None and len(found) < _MAX_DEPTH:
            frame = getattr(awaiting, "cr_frame", None) or getattr(awaiting, "gi_frame", None)
            if frame is None:
                break
            found.append(frame)
            awaiting = getattr(awaiting, "cr_await", None) or getattr(
                awaiting, "gi_yieldfrom", None
            )
        return found
    else:
        frame = getattr(context, "gr_frame", None)
    walked = [f for f, _ in traceback.walk_stack(frame)] if frame is not None else []
    walked.reverse()
    return walked[-_MAX_DEPTH:]


# How deep a stack is followed for a message.
_MAX_DEPTH = 64


__all__ = ["Context", "current", "thread", "describe", "stack", "green"]
