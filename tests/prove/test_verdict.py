"""The verdict over a run's files (``safeclients._prove.verdict``): a table of event sets and
what each must say. No processes: the files are written here as the detectors would."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from safeclients._prove.errors import ProveError
from safeclients._prove.slots import CLIENTS_FILE, Client
from safeclients._prove.verdict import PROCESSES, THREADS, read


def client(**changes: Any) -> Client:
    base = Client(
        index=0,
        where="app.db",
        aliases=(),
        type_name="pymysql.connections.Connection",
        suggest="safeclients.pooled(factory)",
        thread_safe=False,
        connected_at_fork=True,
        connection="127.0.0.1:3306",
    )
    return Client(**{**asdict(base), **changes})


def use(pid: int, thread: str = "core-1", site: str = "app.py:3 in view") -> dict[str, Any]:
    return {"e": "use", "c": 0, "pid": pid, "thread": thread, "method": "query", "site": site}


OVERLAP = {
    "e": "overlap",
    "c": 0,
    "pid": 10,
    "thread": "core-2",
    "method": "query",
    "site": "app.py:3 in view",
    "other_thread": "MainThread",
    "other_method": "commit",
    "other_site": "app.py:9 in save",
}


def write(directory: Path, clients: list[Client], events: list[dict[str, Any]]) -> None:
    (directory / CLIENTS_FILE).write_text(
        json.dumps({"clients": [asdict(c) for c in clients], "unwatched": [], "proxies": 0})
    )
    for event in events:
        with open(directory / f"events-{event['pid']}.jsonl", "a") as out:
            out.write(json.dumps(event) + "\n")


# (case, clients, events, kinds of the unsafe findings, a note that must be there)
CASES = [
    ("one process, one thread", [client()], [use(10)], [], None),
    ("two threads at once", [client()], [use(10), OVERLAP], [THREADS], None),
    (
        "two threads at once on a thread-safe client",
        [client(thread_safe=True, connected_at_fork=False)],
        [use(10), OVERLAP],
        [],
        None,
    ),
    ("two processes, connected at the fork", [client()], [use(10), use(11)], [PROCESSES], None),
    (
        "two processes, no probe to tell",
        [client(connected_at_fork=None, connection="")],
        [use(10), use(11)],
        [PROCESSES],
        None,
    ),
    (
        "two processes, not connected at the fork",
        [client(connected_at_fork=False, connection="")],
        [use(10), use(11)],
        [],
        "app.db was used in 2 processes, but held no connection",
    ),
    ("both", [client()], [use(10), OVERLAP, use(11)], [THREADS, PROCESSES], None),
    ("never used", [client()], [], [], "app.db was never called"),
    ("nothing watched", [], [], [], "no client of a known type was found"),
]


@pytest.mark.parametrize(
    ("case", "clients", "events", "kinds", "note"), CASES, ids=[c[0] for c in CASES]
)
def test_verdict_table(
    tmp_path: Path,
    case: str,
    clients: list[Client],
    events: list[dict[str, Any]],
    kinds: list[str],
    note: str | None,
) -> None:
    write(tmp_path, clients, events)
    verdict = read(tmp_path)
    assert [u.kind for u in verdict.unsafe] == kinds, case
    if note is not None:
        assert any(n.startswith(note) for n in verdict.notes), verdict.notes


def test_an_overlap_names_both_threads_methods_and_call_sites(tmp_path: Path) -> None:
    write(tmp_path, [client(aliases=("app.other",))], [use(10), OVERLAP, OVERLAP])
    (found,) = read(tmp_path).unsafe
    assert (found.where, found.count, found.at_least) == ("app.db", 2, False)
    assert str(found.first) == "pid 10 thread 'core-2' in query() at app.py:3 in view"
    assert str(found.second) == "pid 10 thread 'MainThread' in commit() at app.py:9 in save"
    text = read(tmp_path).render()
    assert (
        "UNSAFE  app.db (pymysql.connections.Connection): used by two threads at once, 2 times"
        in text
    )
    assert "also at app.other" in text and "use     safeclients.pooled(factory)" in text


def test_two_processes_name_the_connection_they_share(tmp_path: Path) -> None:
    write(tmp_path, [client()], [use(10, "MainThread"), use(11, "MainThread", "app.py:5 in x")])
    (found,) = read(tmp_path).unsafe
    assert (found.first.pid, found.second.pid, found.second.site) == (10, 11, "app.py:5 in x")
    assert "(127.0.0.1:3306)" in found.detail


def test_a_line_cut_by_a_killed_process_is_skipped(tmp_path: Path) -> None:
    write(tmp_path, [client()], [use(10), OVERLAP])
    with open(tmp_path / "events-10.jsonl", "a") as out:
        out.write('{"e": "overl')
    assert [u.kind for u in read(tmp_path).unsafe] == [THREADS]


def test_no_description_is_a_prove_error_saying_so(tmp_path: Path) -> None:
    with pytest.raises(ProveError, match="wrote no description of the clients"):
        read(tmp_path)
