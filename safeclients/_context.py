"""The calling context's identity: an asyncio task, else the thread or greenlet.

Who is "inside" a client is a question about contexts, not OS threads. Two asyncio tasks of one
thread overlap inside one instance whenever the first awaits in the middle of its use (an
asyncpg query, a held awaitable not yet finished); two greenlets of one OS thread do the same
whenever the first yields to the hub. ``threading.get_ident()`` sees neither pair: it is the one
OS thread's ident for every task of its loop, and, before gevent's patch, for every greenlet.

:func:`current` answers for all three: the running task when the calling thread runs an
asyncio loop and is inside a task; otherwise ``threading.get_ident()`` looked up *at each call*
(after ``gevent.monkey.patch_all()`` that is the greenlet's ident, so an object made before the
patch needs no renewal). The check mode's tracker (``_check``) and ``guarded`` key their "who
is inside" tables by it.

A task is used as itself (hashed by identity, held only while it is inside a use), never by
``id(task)``, which a later task may reuse.

Which thread runs this: whichever context asks, on every checked or guarded use.
"""

from __future__ import annotations

import asyncio
import threading
from asyncio.events import _get_running_loop
from typing import Union

#: A context: an asyncio task, or a thread's (greenlet's) ident.
Context = Union[int, "asyncio.Task[object]"]


def current() -> Context:
    """The calling context: its asyncio task inside a running loop, else its thread (or
    greenlet, once gevent has patched ``threading``) ident."""
    if _get_running_loop() is not None:
        task = asyncio.current_task()
        if task is not None:
            return task
    return threading.get_ident()


def thread() -> int:
    """The calling thread's (greenlet's, once patched) ident, looked up at each call."""
    return threading.get_ident()


def describe(context: Context) -> str:
    """How a context reads in a message: ``thread 'name' (ident N)`` or ``task 'name'``."""
    if isinstance(context, int):
        name = "?"
        for thread in threading.enumerate():
            if thread.ident == context:
                name = thread.name
                break
        return f"thread {name!r} (ident {context})"
    return f"asyncio task {context.get_name()!r}"


__all__ = ["Context", "current", "thread", "describe"]
