"""The reporting detector: a transparent proxy that records who calls a client, and when.

``Watched(client, track)`` forwards everything to ``client`` (a wrapt proxy: ``isinstance``,
attributes, operators and ``with`` reach the client). A call of one of the client's own methods
goes through a small wrapper that, before and after the call, notes "thread T of process P is
inside method m, called from file:line" in its :class:`Track`. It adds no lock and never
raises: the app runs exactly as it would in production, races included. What it sees becomes
events in a :class:`Sink`:

* ``use``: the first call of the client by a thread of a process (so the verdict can say which
  processes used one instance, and from where; threads are told apart by ident, which a new
  thread may reuse once another has ended);
* ``overlap``: a thread called the client while another thread of the same process was still
  inside a call on it (both threads, both methods, both call sites).

Results of the methods a client's profile lists as derived (``cursor()``, ``channel()``,
``pipeline()``) are wrapped too, with the same Track: a use of the cursor is a use of its
connection. ``with client.cursor() as cur`` gives back the wrapped cursor when the client's
``__enter__`` returns the client itself.

Process and thread: a Watched is made before the fork (in the proving ground's master, or in the
test process by ``hammer``); its calls run on the request threads of every worker. The Track's
``inside`` dict is keyed by thread ident, each thread writing only its own key (a dict store is
atomic under the GIL). Across a fork: the Watched keeps the very instance it wraps (the point is
to see what production would do with it); the set of threads seen is per process (re-made when
the pid changes), and so is the Sink's file.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import wrapt

__all__ = [
    "Sink",
    "Track",
    "Watched",
    "Site",
    "EVENTS_GLOB",
    "OVERLAP_EVENTS",
    "site_of",
    "format_site",
]

#: Where a call came from: the caller's code object and line.
Site = tuple[types.CodeType, int]

# Paths in call sites are shown relative to this (the proving ground's cwd: the app's root).
_CWD = os.getcwd() + os.sep

#: The event files of one run, one per process: ``events-<pid>.jsonl``.
EVENTS_GLOB = "events-*.jsonl"

# At most this many overlap events per client and process (a bounded file): enough to show the
# pairs of call sites a short run meets; past it, the verdict says "at least" this many.
OVERLAP_EVENTS = 200


class Sink:
    """Appends events, one JSON line each, to ``<directory>/events-<pid>.jsonl``.

    Each process opens its own file on its first event (the pid is compared on every write, so a
    fork made from C, with no at-fork hook, still gets its own file). A line is one ``os.write``
    on an ``O_APPEND`` descriptor: lines from the threads of one process never interleave. Two
    threads opening the file at once open it twice; both descriptors append, one is never
    closed (once per process, bounded).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._opened: tuple[int, int] = (0, -1)  # (pid, fd); rebound whole, never mutated
        self._failed = 0  # the pid that already said a write failed

    def write(self, event: dict[str, Any]) -> None:
        """Append ``event``; never raises into the app: a write that fails (the directory
        removed, the disk full) is said once per process on stderr, and the event is lost."""
        pid, fd = self._opened
        try:
            if pid != os.getpid():
                pid = os.getpid()
                path = self.directory / f"events-{pid}.jsonl"
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
                self._opened = (pid, fd)
            event["pid"] = pid
            os.write(fd, (json.dumps(event) + "\n").encode())
        except OSError as exc:
            if self._failed != pid:
                self._failed = pid
                print(
                    f"safeclients prove: pid {pid} could not record a use of a client "
                    f"({exc}): the verdict may miss some",
                    file=sys.stderr,
                )


class Track:
    """What one watched client has seen: who is inside a call on it right now, which threads of
    this process have used it. Shared by the client's Watched and those of its derived objects.
    """

    def __init__(self, index: int, sink: Sink, derived: frozenset[str] = frozenset()) -> None:
        self.index = index
        self.sink = sink
        self.derived = derived
        # Thread ident -> (thread name, method, call site) of the outermost call it is inside.
        self.inside: dict[int, tuple[str, str, Site]] = {}
        # (pid, thread idents that used the client in that process); rebound whole on a fork.
        self.seen: tuple[int, set[int]] = (0, set())
        self.overlaps = 0  # overlap events written in this process (bounded by OVERLAP_EVENTS)

    def enter(self, method: str, site: Site) -> int | None:
        """Note the calling thread inside ``method``, called from ``site``; returns the token
        for :meth:`leave`, or None for a nested call (a callback re-entering the client on the
        same thread)."""
        ident = threading.get_ident()
        inside = self.inside
        if ident in inside:
            return None
        pid = os.getpid()
        seen_pid, seen = self.seen
        if seen_pid != pid:
            seen = set()
            self.seen = (pid, seen)
            self.inside = inside = {}  # a thread inside at the fork is not inside here
            self.overlaps = 0
        name = threading.current_thread().name
        inside[ident] = (name, method, site)
        if ident not in seen:
            seen.add(ident)
            self.sink.write(
                {
                    "e": "use",
                    "c": self.index,
                    "thread": name,
                    "method": method,
                    "site": format_site(site),
                }
            )
        if len(inside) > 1:
            self._overlap(ident, (name, method, site))
        return ident

    def leave(self, token: int | None) -> None:
        if token is not None:
            self.inside.pop(token, None)

    def _overlap(self, me: int, mine: tuple[str, str, Site]) -> None:
        for ident, (thread, method, site) in list(self.inside.items()):
            if ident == me or self.overlaps >= OVERLAP_EVENTS:
                continue
            self.overlaps += 1
            self.sink.write(
                {
                    "e": "overlap",
                    "c": self.index,
                    "thread": mine[0],
                    "method": mine[1],
                    "site": format_site(mine[2]),
                    "other_thread": thread,
                    "other_method": method,
                    "other_site": format_site(site),
                }
            )


def site_of(depth: int) -> Site:
    """The call site ``depth`` frames above the caller, unformatted (cheap: formatted only
    when an event is written)."""
    frame = sys._getframe(depth + 1)
    return frame.f_code, frame.f_lineno


def format_site(site: Site) -> str:
    """``file:line in function``; a path under the directory the process started in is given
    relative to it."""
    code, line = site
    filename = code.co_filename
    if filename.startswith(_CWD):
        filename = filename[len(_CWD) :]
    return f"{filename}:{line} in {code.co_name}"


# Subscripted for the type checker alone, as safeclients._proxy does (older wrapt cannot).
if TYPE_CHECKING:
    _WatchedBase = wrapt.ObjectProxy[Any]
else:
    _WatchedBase = wrapt.ObjectProxy


class Watched(_WatchedBase):
    """The client, watched (module docstring). Owns no visible name: its state is ``_self_*``."""

    def __init__(self, wrapped: object, track: Track) -> None:
        super().__init__(wrapped)
        self._self_track = track

    def __getattr__(self, name: str) -> Any:
        value = super().__getattr__(name)
        if getattr(value, "__self__", None) is self.__wrapped__ and callable(value):
            return _watched_call(self._self_track, name, value)
        return value

    def __enter__(self) -> Any:
        entered = self.__wrapped__.__enter__()
        return self if entered is self.__wrapped__ else entered

    def __exit__(self, *exc_info: object) -> Any:
        return self.__wrapped__.__exit__(*exc_info)

    def __reduce_ex__(self, protocol: object) -> Any:  # pickling sees the client, as without us
        return self.__wrapped__.__reduce_ex__(protocol)


def _watched_call(track: Track, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    derived = name in track.derived

    def call(*args: Any, **kwargs: Any) -> Any:
        token = track.enter(name, site_of(1))
        try:
            result = method(*args, **kwargs)
        finally:
            track.leave(token)
        if derived and result is not None:
            return Watched(result, track)
        return result

    return call
