"""``SAFECLIENTS_CHECK=1``: policies verify their own invariants on every use.

A test suite can set the variable to turn every ``locked``/``per_thread``/``pooled`` proxy into a
checking one without code changes. The variable is read when a proxy is created. A checking proxy
takes the generic (slower) call path, and around every use of an instance asserts that

* no other context (asyncio task, thread or greenlet: ``_context``) is inside the same instance
  (else ``ConcurrentUseError``), and
* the instance was created in this process (else ``ForkedUseError``).

Either would be a bug in safeclients itself, so the error is raised loudly, never logged.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from safeclients import _context
from safeclients.errors import ConcurrentUseError, ForkedUseError

ENV_VAR = "SAFECLIENTS_CHECK"


def enabled() -> bool:
    """Whether a proxy created now should check its invariants."""
    return os.environ.get(ENV_VAR, "") not in ("", "0")


class Tracker:
    """Who is using which instance right now; one per checking proxy.

    A user is a context (``_context``): an asyncio task, else a thread or greenlet, so two
    tasks of one loop overlapping inside one instance are seen, and so are two greenlets.
    ``per_loop`` and ``per_thread`` share their instance between the tasks of a thread by
    design: their trackers key by thread (``tasks=False``). A context may nest uses of the
    instance it is inside (a pinned call inside a cursor's life, a callback); tasks that merely
    alternate (one use ends before the next begins) never conflict.

    Every successful ``enter`` is matched by one ``leave``, which may run in another context:
    a held awaitable made in one task is often awaited in another (``asyncio.gather`` wraps it
    in a task of its own), and a derived object may be closed anywhere. So ``leave`` ends the
    use whoever calls it; an ``enter`` that raised is never left (the generated code gives the
    instance back itself).

    Runs in request threads and tasks (enter/leave) and in the fork child's first caller
    (reset).
    """

    def __init__(self, policy: str, *, tasks: bool = True) -> None:
        self._policy = policy
        self._who: Callable[[], _context.Context] = _context.current if tasks else _context.thread
        # Guards _users and _creators.
        self._users_lock = threading.Lock()
        # id(instance) -> (context, nesting depth) while some context is inside it.
        self._users: dict[int, tuple[_context.Context, int]] = {}
        # id(instance) -> pid of the process that created it.
        self._creators: dict[int, int] = {}

    def created(self, obj: object) -> None:
        with self._users_lock:
            self._creators[id(obj)] = os.getpid()

    def forget(self, obj: object) -> None:
        with self._users_lock:
            self._creators.pop(id(obj), None)
            self._users.pop(id(obj), None)

    def enter(self, obj: object) -> None:
        me = self._who()
        key = id(obj)
        with self._users_lock:
            creator = self._creators.get(key)
            owner, depth = self._users.get(key, (me, 0))
            entered = owner == me
            if entered:
                self._users[key] = (me, depth + 1)
        if creator is not None and creator != os.getpid():
            if entered:
                self.leave(obj)
            raise ForkedUseError(
                f"SAFECLIENTS_CHECK: {self._policy} handed process {os.getpid()} a "
                f"{type(obj).__name__} created in process {creator}"
            )
        if not entered:
            raise ConcurrentUseError(
                f"SAFECLIENTS_CHECK: {self._policy} handed {_context.describe(me)} a "
                f"{type(obj).__name__} that {_context.describe(owner)} is still using"
            )

    def leave(self, obj: object) -> None:
        """End one use of ``obj`` (any context: see the class)."""
        key = id(obj)
        with self._users_lock:
            found = self._users.get(key)
            if found is None:
                return
            owner, depth = found
            if depth <= 1:
                del self._users[key]
            else:
                self._users[key] = (owner, depth - 1)

    def reset(self) -> None:
        """Fork child: forget everything (the parent's instances are dropped too)."""
        self._users_lock = threading.Lock()
        self._users = {}
        self._creators = {}
