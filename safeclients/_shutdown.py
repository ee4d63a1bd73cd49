"""Running an async step inside a loop when that loop shuts down.

An async client's close must be awaited inside the loop it runs on, before the loop goes away.
A loop registers every async generator first iterated in it (``sys.get_asyncgen_hooks``), and
``loop.shutdown_asyncgens()``, which ``asyncio.run()`` and ``asyncio.Runner`` always call (after
cancelling the remaining tasks), closes them inside the loop. So :func:`at_loop_shutdown` starts
(one synchronous step) a small async generator suspended at its ``yield``, whose ``finally``
awaits the given step. It is started with the loop's *first-iteration* hook only, never its
finalizer, so it holds no reference to the loop; freed without that shutdown (a loop closed by
hand), it just ends, running nothing (no await may happen in a garbage-collected close).

Used by ``per_loop`` (close the loop's instance) and ``pooled`` (close the instances made in the
loop, and free their slots, so a loop that ends never leaves its instances to the next one).

Which thread runs what: ``at_loop_shutdown`` in the loop's thread, inside the running loop; the
step at that loop's shutdown, in the same thread.
"""

from __future__ import annotations

import sys
import weakref
from asyncio import AbstractEventLoop
from asyncio.events import _get_running_loop
from collections.abc import AsyncGenerator, Awaitable, Callable


async def _suspended(
    loop_ref: weakref.ref[AbstractEventLoop], step: Callable[[], Awaitable[None]]
) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        loop = loop_ref()
        if loop is not None and _get_running_loop() is loop:
            await step()


def at_loop_shutdown(step: Callable[[], Awaitable[None]]) -> AsyncGenerator[None, None] | None:
    """Arrange ``await step()`` inside the running loop at its ``shutdown_asyncgens``. Returns
    the generator (keep it alive as long as the step matters), or None if the loop installs no
    async-generator hooks (then nothing runs at its shutdown)."""
    loop = _get_running_loop()
    firstiter, finalizer = sys.get_asyncgen_hooks()
    if loop is None or firstiter is None:
        return None
    waiter = _suspended(weakref.ref(loop), step)
    # First-iteration hook only: the loop's finalizer would hold the loop from the generator.
    sys.set_asyncgen_hooks(firstiter=firstiter, finalizer=None)
    try:
        first = waiter.asend(None)
    finally:
        sys.set_asyncgen_hooks(firstiter=firstiter, finalizer=finalizer)
    try:
        first.send(None)
    except StopIteration:
        pass  # suspended at its `yield`, as intended
    return waiter


__all__ = ["at_loop_shutdown"]
