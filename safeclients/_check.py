"""``SAFECLIENTS_CHECK=1``: policies verify their own invariants on every use.

A test suite can set the variable to turn every ``locked``/``per_thread``/``pooled`` proxy into a
checking one without code changes. The variable is read when a proxy is created. A checking proxy
takes the generic (slower) call path, and around every use of an instance asserts that

* no other thread is inside the same instance (else ``ConcurrentUseError``), and
* the instance was created in this process (else ``ForkedUseError``).

Either would be a bug in safeclients itself, so the error is raised loudly, never logged.
"""

from __future__ import annotations

import os
import threading

from safeclients.errors import ConcurrentUseError, ForkedUseError

ENV_VAR = "SAFECLIENTS_CHECK"


def enabled() -> bool:
    """Whether a proxy created now should check its invariants."""
    return os.environ.get(ENV_VAR, "") not in ("", "0")


class Tracker:
    """Who is using which instance right now; one per checking proxy.

    Runs in request threads (enter/leave) and in the fork child's first caller (reset).
    """

    def __init__(self, policy: str) -> None:
        self._policy = policy
        # Guards _users and _creators.
        self._users_lock = threading.Lock()
        # id(instance) -> (thread ident, nesting depth) while some thread is inside it.
        self._users: dict[int, tuple[int, int]] = {}
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
        me = threading.get_ident()
        key = id(obj)
        with self._users_lock:
            creator = self._creators.get(key)
            owner, depth = self._users.get(key, (me, 0))
            if owner == me:
                self._users[key] = (me, depth + 1)
        if creator is not None and creator != os.getpid():
            raise ForkedUseError(
                f"SAFECLIENTS_CHECK: {self._policy} handed process {os.getpid()} a "
                f"{type(obj).__name__} created in process {creator}"
            )
        if owner != me:
            raise ConcurrentUseError(
                f"SAFECLIENTS_CHECK: {self._policy} handed thread {me} a "
                f"{type(obj).__name__} that thread {owner} is still using"
            )

    def leave(self, obj: object) -> None:
        me = threading.get_ident()
        key = id(obj)
        with self._users_lock:
            owner, depth = self._users.get(key, (me, 1))
            if owner == me:
                if depth <= 1:
                    self._users.pop(key, None)
                else:
                    self._users[key] = (me, depth - 1)

    def reset(self) -> None:
        """Fork child: forget everything (the parent's instances are dropped too)."""
        self._users_lock = threading.Lock()
        self._users = {}
        self._creators = {}
