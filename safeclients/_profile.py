"""The ``Profile`` record: what safeclients knows about one client type.

Its own module so that the shipped table (``_profile_table``) and the registry
(``profiles``, which loads that table) both import it and neither imports the other back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from safeclients._probes import Probe

#: The policy names a profile's ``suggest`` holds (a registration through the older
#: ``safeclients.audit.register`` may hold free text instead; the audit prints it verbatim).
POLICIES = frozenset({"pooled", "per_thread", "locked", "per_process", "per_loop"})


@dataclass(frozen=True)
class Profile:
    """What safeclients knows about one client type (module docstring)."""

    qualname: str  # "pymysql.connections.Connection" (type's module + qualname)
    reason: str  # why it is unsafe (the audit prints it)
    suggest: str  # "pooled" | "per_thread" | "locked" | "per_process" | "per_loop"
    sources: tuple[str, ...]  # URLs of the client's docs/source backing each claim
    probe: Probe | None = None  # audit: describe its open connection, or None; never sends
    broken: tuple[str, ...] = ()  # qualified names of exception classes meaning "this
    # connection is dead, discard it" (matched over the MRO); used only without `disconnect`
    close: Callable[[Any], object] | None = None  # how to close it (None: obj.close())
    check: Callable[[Any], object] | None = None  # health check (a ping): raises when dead
    derived: frozenset[str] = field(default=frozenset())  # methods whose result is bound to
    # the instance (cursor, channel, pipeline, ...)
    thread_safe: bool = False  # True: safe across threads, unsafe only across forks
    fork_aware: bool = False  # True: the client notices a fork itself and opens new connections
    # in the child (redis-py's pool checks its pid), so workers never share one
    disconnect: Callable[[BaseException, Any], bool] | None = None  # is_disconnect(exc, obj):
    # whether `exc`, raised by a call on `obj` (None when unknown), means obj's connection is
    # dead, by error code, connection state or reply code (``_disconnect``). When set it is
    # the whole judgement: a live connection after a statement error is kept, transaction and
    # all, whatever the exception's class.
    one_task: bool = False  # serves one task at a time, and a task's transaction is the
    # connection's (asyncpg's Connection): under per_loop, the loop's one instance is refused
    # to another task while a task holds it (a block, a transaction, a cursor)
    check_interval: float | None = None  # seconds between runs of `check` when the app gives
    # neither check= nor check_interval= (None: the policies' default, once a second). 0 for
    # a check that costs no round trip and a client whose failures the proxy never sees as
    # exceptions (paho's publish() returns an error code): only its check can notice.

    def __post_init__(self) -> None:
        if not isinstance(self.qualname, str) or "." not in self.qualname.strip("."):
            raise ValueError(
                f"Profile qualname {self.qualname!r} is not a qualified class "
                "name such as 'package.module.Class'."
            )
        for name in ("sources", "broken"):
            if not isinstance(getattr(self, name), tuple):
                raise TypeError(
                    f"Profile {self.qualname}: {name} must be a tuple of str, "
                    f"not {type(getattr(self, name)).__name__}."
                )
        if self.disconnect is not None and not callable(self.disconnect):
            raise TypeError(
                f"Profile {self.qualname}: disconnect must be a callable (exc, obj) -> bool, "
                f"not {self.disconnect!r}."
            )
        interval = self.check_interval
        if interval is not None and (
            isinstance(interval, bool)
            or not isinstance(interval, (int, float))
            or not 0 <= interval < float("inf")
        ):
            raise ValueError(
                f"Profile {self.qualname}: check_interval must be None or a finite number of "
                f"seconds >= 0, not {interval!r}."
            )
        if not isinstance(self.derived, frozenset):
            raise TypeError(
                f"Profile {self.qualname}: derived must be a frozenset of method "
                f"names, not {type(self.derived).__name__}."
            )


# Its public name, where users import and pickle it from (safeclients.profiles re-exports it).
Profile.__module__ = "safeclients.profiles"

__all__ = ["POLICIES", "Profile"]
