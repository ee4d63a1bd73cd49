"""The verdict: which watched client was used unsafely, by whom, from where.

:func:`read` takes the run's directory (``clients.json`` from :mod:`~safeclients._prove.slots`,
one ``events-<pid>.jsonl`` per process from :mod:`~safeclients._prove.detector`) and returns a
:class:`Verdict`. A client is used unsafely when

* two threads of one process were inside calls on it at once (not counted for a client whose
  profile says it is thread-safe, such as redis-py's ``Redis``); or
* the one instance created before the fork was used in two processes, and it held an open
  connection at the fork (or its profile has no probe to tell): both processes then talk over
  one socket. An instance that held no connection at the fork connects separately in each
  process; that is listed as a note, not counted.

Each finding names the client (``module.name``), the first two uses that show it (pid, thread,
method, call site as ``file:line``), how often it happened, and the policy its profile
suggests. Process and thread: runs in the process that asks (the CLI, a test), after the run.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from safeclients._prove.detector import EVENTS_GLOB, OVERLAP_EVENTS
from safeclients._prove.errors import ProveError
from safeclients._prove.slots import CLIENTS_FILE, Client

__all__ = ["Use", "Unsafe", "Verdict", "read"]

THREADS = "threads"
PROCESSES = "processes"


@dataclass(frozen=True)
class Use:
    """One use of a client: which process and thread, which method, from where."""

    pid: int
    thread: str
    method: str
    site: str

    def __str__(self) -> str:
        return f"pid {self.pid} thread {self.thread!r} in {self.method}() at {self.site}"


@dataclass(frozen=True)
class Unsafe:
    """A client used by two threads at once (``kind="threads"``) or in two processes."""

    where: str
    type_name: str
    aliases: tuple[str, ...]  # other places that hold the same instance
    kind: str
    count: int  # overlaps seen, or processes that used the instance
    at_least: bool  # the count was capped (detector.OVERLAP_EVENTS per process)
    first: Use
    second: Use
    suggest: str
    detail: str


@dataclass(frozen=True)
class Verdict:
    """What a run saw. ``unsafe`` empty: nothing unsafe was seen (which proves only that much:
    the run's paths, its concurrency, its requests)."""

    clients: list[Client]
    unsafe: list[Unsafe]
    notes: list[str] = field(default_factory=list)
    proxies: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "clients": [asdict(c) for c in self.clients],
            "unsafe": [asdict(u) for u in self.unsafe],
            "notes": self.notes,
            "proxies": self.proxies,
        }

    def render(self) -> str:
        """The findings as text, one block per unsafe use, then the notes."""
        lines: list[str] = []
        for u in self.unsafe:
            name = f"{u.where} ({u.type_name})"
            count = f"{'at least ' if u.at_least else ''}{u.count}"
            if u.kind == THREADS:
                lines.append(f"UNSAFE  {name}: used by two threads at once, {count} times")
            else:
                lines.append(f"UNSAFE  {name}: one instance used in {count} processes")
            if u.aliases:
                lines.append(f"  also at {', '.join(u.aliases)}")
            lines.append(f"  first   {u.first}")
            lines.append(f"  second  {u.second}")
            if u.detail:
                lines.append(f"  why     {u.detail}")
            lines.append(f"  use     {u.suggest}")
        for note in self.notes:
            lines.append(f"note: {note}")
        return "\n".join(lines)


def read(directory: str | os.PathLike[str]) -> Verdict:
    """The verdict of the run whose files are in ``directory``."""
    base = Path(directory)
    try:
        described = json.loads((base / CLIENTS_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ProveError(
            f"the proving ground wrote no description of the clients it watched "
            f"({base / CLIENTS_FILE}: {exc}); the app was not run under it"
        ) from None
    clients = [Client(**{**c, "aliases": tuple(c["aliases"])}) for c in described["clients"]]
    notes = [f"{text}." for text in described["unwatched"]]
    overlaps: dict[int, list[dict[str, Any]]] = {}
    first_uses: dict[int, dict[int, Use]] = {}  # client -> pid -> first use in that process
    capped: Counter[int] = Counter()
    for path in sorted(base.glob(EVENTS_GLOB)):
        per_process: Counter[int] = Counter()
        for line in path.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line cut by a process killed while writing it
            index = event["c"]
            if event["e"] == "use":
                first_uses.setdefault(index, {}).setdefault(
                    event["pid"], Use(event["pid"], event["thread"], event["method"], event["site"])
                )
            elif event["e"] == "overlap":
                overlaps.setdefault(index, []).append(event)
                per_process[index] += 1
        for index, count in per_process.items():
            if count >= OVERLAP_EVENTS:
                capped[index] += 1
    unsafe: list[Unsafe] = []
    for client in clients:
        seen = overlaps.get(client.index, [])
        if seen and not client.thread_safe:
            first = seen[0]
            unsafe.append(
                _finding(
                    client,
                    THREADS,
                    len(seen),
                    Use(first["pid"], first["thread"], first["method"], first["site"]),
                    Use(
                        first["pid"],
                        first["other_thread"],
                        first["other_method"],
                        first["other_site"],
                    ),
                    "its calls are not thread-safe: the second thread called it while the first "
                    "was still inside a call",
                    at_least=capped[client.index] > 0,
                )
            )
        uses = list(first_uses.get(client.index, {}).values())
        if not uses:
            notes.append(
                f"{client.where} was never called: the run did not reach it (another path "
                "might), or the app called it through a reference taken before it was watched"
            )
        elif len(uses) > 1 and client.connected_at_fork is False:
            notes.append(
                f"{client.where} was used in {len(uses)} processes, but held no connection "
                "at the fork: each process connected its own copy"
            )
        elif len(uses) > 1:
            unsafe.append(_finding(client, PROCESSES, len(uses), uses[0], uses[1], _shared(client)))
    if not clients and not described["proxies"]:
        notes.append(
            "no client of a known type was found in the app's modules: prove watches the "
            "types that have a client profile (safeclients.profiles); register yours with "
            "--profiles MODULE, or watch more packages with --package NAME"
        )
    return Verdict(clients, unsafe, notes, described["proxies"])


def _finding(
    client: Client,
    kind: str,
    count: int,
    first: Use,
    second: Use,
    detail: str,
    at_least: bool = False,
) -> Unsafe:
    return Unsafe(
        where=client.where,
        type_name=client.type_name,
        aliases=client.aliases,
        kind=kind,
        count=count,
        at_least=at_least,
        first=first,
        second=second,
        suggest=client.suggest,
        detail=detail,
    )


def _shared(client: Client) -> str:
    """Why one instance used in two processes is unsafe, from its state at the fork."""
    if client.connected_at_fork:
        return (
            f"it held an open connection at the fork ({client.connection}): the processes "
            "talk over that one connection, and read each other's replies"
        )
    if client.connection:  # the probe raised: its description says so
        return (
            f"it was created before the fork, and its probe could not tell whether it held a "
            f"connection then ({client.connection}): assume the processes share it"
        )
    return (
        "it was created before the fork, and its profile has no probe to tell whether it held "
        "a connection then: assume the processes share it"
    )
