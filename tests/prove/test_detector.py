"""The reporting detector (``safeclients._prove.detector``): transparent, records first uses and
overlaps, follows derived objects, never raises. No sockets; threads meet through events."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from safeclients._prove.detector import OVERLAP_EVENTS, Sink, Track, Watched, site_of

BOUND = 10.0


class Client:
    """Its ``wait`` holds the caller inside the client until ``release`` is set."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.value = 41

    def wait(self) -> str:
        self.entered.set()
        assert self.release.wait(BOUND), "the test never released the client"
        return threading.current_thread().name

    def plus(self, n: int) -> int:
        return self.value + n

    def cursor(self) -> Cursor:
        return Cursor(self)

    def boom(self) -> None:
        raise KeyError("job handle")

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class Cursor:
    def __init__(self, client: Client) -> None:
        self.client = client

    def execute(self) -> int:
        return self.client.value

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.fixture
def events_dir(tmp_path: Path) -> Path:
    return tmp_path


def events(directory: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted(directory.glob("events-*.jsonl")):
        found += [json.loads(line) for line in path.read_text().splitlines()]
    return found


@pytest.fixture
def watched(events_dir: Path) -> Iterator[tuple[Any, Client]]:
    client = Client()
    yield Watched(client, Track(0, Sink(events_dir), frozenset({"cursor"}))), client
    client.release.set()


def test_the_detector_is_transparent(watched: tuple[Any, Client]) -> None:
    proxy, client = watched
    assert isinstance(proxy, Client)
    assert proxy.value == 41 and proxy.plus(1) == 42
    proxy.value = 1
    assert client.value == 1
    with pytest.raises(KeyError, match="job handle"):
        proxy.boom()
    with proxy as entered:
        assert entered is proxy  # __enter__ returning the client gives back the watched one


def test_a_thread_first_use_is_recorded_once_with_its_call_site(
    watched: tuple[Any, Client], events_dir: Path
) -> None:
    proxy, _ = watched
    for _ in range(3):
        proxy.plus(1)
    (use,) = events(events_dir)
    assert use["e"] == "use" and use["c"] == 0 and use["pid"] == os.getpid()
    assert use["thread"] == threading.current_thread().name and use["method"] == "plus"
    assert use["site"].startswith("tests/prove/test_detector.py:")
    assert use["site"].endswith("in test_a_thread_first_use_is_recorded_once_with_its_call_site")


def test_two_threads_inside_at_once_are_an_overlap_naming_both(
    watched: tuple[Any, Client], events_dir: Path
) -> None:
    proxy, client = watched
    first = threading.Thread(target=proxy.wait, name="first")
    first.start()
    assert client.entered.wait(BOUND)
    proxy.plus(1)  # the main thread calls while "first" is inside wait()
    client.release.set()
    first.join(BOUND)
    overlaps = [e for e in events(events_dir) if e["e"] == "overlap"]
    assert len(overlaps) == 1, overlaps
    (overlap,) = overlaps
    assert (overlap["thread"], overlap["method"]) == (threading.current_thread().name, "plus")
    assert (overlap["other_thread"], overlap["other_method"]) == ("first", "wait")
    assert overlap["site"].startswith("tests/prove/test_detector.py:")


def test_calls_one_after_the_other_are_no_overlap(
    watched: tuple[Any, Client], events_dir: Path
) -> None:
    proxy, client = watched
    client.release.set()
    threads = [threading.Thread(target=proxy.wait) for _ in range(4)]
    for thread in threads:
        thread.start()
        thread.join(BOUND)
    kinds = [e["e"] for e in events(events_dir)]
    # One "use" per thread ident: a thread started after another ended may reuse its ident.
    assert kinds and set(kinds) == {"use"}, kinds


def test_a_derived_cursor_counts_as_a_use_of_its_client(
    watched: tuple[Any, Client], events_dir: Path
) -> None:
    proxy, client = watched
    first = threading.Thread(target=proxy.wait, name="first")
    first.start()
    assert client.entered.wait(BOUND)
    with proxy.cursor() as cursor:
        assert isinstance(cursor, Cursor) and type(cursor) is Watched
        assert cursor.execute() == 41
    client.release.set()
    first.join(BOUND)
    overlaps = [(e["method"], e["other_method"]) for e in events(events_dir) if e["e"] == "overlap"]
    assert overlaps == [("cursor", "wait"), ("execute", "wait")], overlaps


def test_overlap_events_are_bounded_per_process(events_dir: Path) -> None:
    track = Track(0, Sink(events_dir))
    here = site_of(0)
    outside = track.enter("wait", here)
    # Another thread's record, as if it were inside: every call from here overlaps with it.
    track.inside[-1] = ("other", "wait", here)
    track.leave(outside)
    for _ in range(OVERLAP_EVENTS + 50):
        track.leave(track.enter("plus", here))
    overlaps = [e for e in events(events_dir) if e["e"] == "overlap"]
    assert len(overlaps) == OVERLAP_EVENTS


def test_each_process_writes_its_own_file_and_forgets_threads_inside_at_the_fork(
    watched: tuple[Any, Client], events_dir: Path
) -> None:
    proxy, _ = watched
    proxy.plus(1)
    track: Track = proxy._self_track
    track.inside[-1] = ("left behind", "wait", site_of(0))  # a thread inside at the fork
    pid = os.fork()
    if pid == 0:
        try:
            proxy.plus(1)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    child = [
        json.loads(line) for line in (events_dir / f"events-{pid}.jsonl").read_text().splitlines()
    ]
    assert [e["e"] for e in child] == ["use"], child  # no overlap with the thread left behind
    assert child[0]["pid"] == pid


def test_a_lost_event_never_reaches_the_app(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proxy = Watched(Client(), Track(0, Sink(tmp_path / "removed")))
    assert proxy.plus(1) == 42  # its "use" event cannot be written
    results: list[int] = []
    other = threading.Thread(target=lambda: results.append(proxy.plus(2)))
    other.start()
    other.join(BOUND)
    assert results == [43]  # a second thread's "use" event: lost too, said once
    err = capsys.readouterr().err
    assert err.count("could not record a use of a client") == 1, err
