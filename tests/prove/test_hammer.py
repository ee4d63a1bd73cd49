"""``safeclients.prove.hammer``: fails on a client used by two threads at once or in two
processes, passes over the fix, says so when the calls themselves fail, and is bounded.

Runs in the pytest process; ``hammer`` forks it (the child leaves with ``os._exit``).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from safeclients.prove import (
    HammerCallsFailed,
    HammerTimeout,
    NothingWatched,
    UnsafeUseFound,
    hammer,
)
from tests.prove.apps import hammered
from tests.prove.apps._fake import MeetingClient


@pytest.fixture(autouse=True)
def fresh_meeting() -> None:
    """A MeetingClient's barrier stays broken once a call gave up waiting: start each test with
    a whole one, so that two threads calling at once do meet inside it."""
    hammered.shared.meeting = threading.Barrier(2)


def test_a_function_over_a_shared_global_fails_naming_the_global() -> None:
    original = hammered.shared
    with pytest.raises(UnsafeUseFound) as raised:
        hammer(hammered.handler, threads=4, calls=4)
    message = str(raised.value)
    assert "UNSAFE  tests.prove.apps.hammered.shared" in message, message
    assert "used by two threads at once" in message, message
    assert "in call() at tests/prove/apps/hammered.py:" in message, message
    assert isinstance(raised.value, AssertionError)  # it fails a test, not errors it
    assert hammered.shared is original, "the global was not put back"


def test_a_global_named_as_a_string_is_watched_where_it_lives() -> None:
    original = hammered.shared
    with pytest.raises(UnsafeUseFound) as raised:
        hammer("tests.prove.apps.hammered:shared.call", threads=2, calls=2, fork=False)
    message = str(raised.value)
    assert "UNSAFE  tests.prove.apps.hammered.shared (tests.prove.apps._fake.MeetingClient)" in (
        message
    )
    assert "also at" not in message, message  # the hand-over to hammer is not a name
    assert hammered.shared is original


@pytest.mark.parametrize(
    ("spec", "error", "says"),
    [
        ("tests.prove.apps.hammered", ValueError, "a string target is 'module:global.method'"),
        ("tests.prove.apps.hammered:nope.call", ValueError, "has no nope.call"),
        ("tests.prove.apps.hammered:shared.calls", TypeError, "names a int, not a callable"),
    ],
)
def test_a_bad_string_target_is_refused_with_a_sentence(
    spec: str, error: type[Exception], says: str
) -> None:
    with pytest.raises(error, match=says):
        hammer(spec)


def test_a_client_connected_before_the_fork_fails_across_it() -> None:
    db = sqlite3.connect(":memory:", check_same_thread=False)
    try:
        with pytest.raises(UnsafeUseFound, match="one instance used in 2 processes") as raised:
            hammer(db.execute, "select 1", threads=2, calls=1)  # a client's method: it is watched
        message = str(raised.value)
        assert "UNSAFE  Connection.execute.__self__ (sqlite3.Connection)" in message, message
        assert "held an open connection at the fork" in message, message
    finally:
        db.close()


def test_the_fix_passes_and_the_verdict_says_what_was_seen() -> None:
    verdict = hammer(hammered.fixed_handler, threads=4, calls=5)
    assert verdict.unsafe == [] and verdict.proxies == 1
    assert [c.where for c in verdict.clients] == ["tests.prove.apps.hammered.shared"]


@pytest.mark.parametrize("fork", [False, True])
def test_the_calls_run_in_this_process_then_in_a_fork_too(tmp_path: Path, fork: bool) -> None:
    calls = tmp_path / "calls"

    def note_pid() -> None:
        with open(calls, "a") as out:
            out.write(f"{os.getpid()}\n")

    hammer(note_pid, threads=2, calls=3, fork=fork, watch=["tests.prove.apps.hammered"])
    pids = calls.read_text().split()
    # 2 threads x 3 calls here; with the fork, again here and in the child at the same time.
    assert (len(set(pids)), len(pids)) == ((2, 18) if fork else (1, 6)), pids


def test_watch_names_the_modules_whose_clients_are_watched() -> None:
    client = hammered.shared

    def through_the_module() -> int:  # defined here: by default this module would be watched
        return hammered.shared.call()

    with pytest.raises(UnsafeUseFound, match="tests.prove.apps.hammered.shared"):
        hammer(
            through_the_module, threads=2, calls=2, fork=False, watch=["tests.prove.apps.hammered"]
        )
    assert hammered.shared is client


def test_calls_that_raise_fail_with_the_first_traceback() -> None:
    def broken() -> None:
        raise ConnectionRefusedError("no backend at 127.0.0.1:1")

    with pytest.raises(HammerCallsFailed) as raised:
        hammer(broken, threads=2, calls=3, watch=["tests.prove.apps.hammered"])
    message = str(raised.value)
    assert "18 calls raised" in message, message  # 2 x 3 here, then 2 x 3 each side of the fork
    assert "ConnectionRefusedError: no backend at 127.0.0.1:1" in message, message


@pytest.fixture
def released() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # frees the threads the timeout left behind


def test_a_call_that_never_returns_is_cut_off_at_the_timeout(released: threading.Event) -> None:
    with pytest.raises(HammerTimeout, match="still calling after 1 s"):
        hammer(
            released.wait,
            threads=2,
            calls=1,
            fork=False,
            timeout=1,
            watch=["tests.prove.apps.hammered"],
        )


def test_a_hammer_with_nothing_to_watch_is_refused_before_any_call() -> None:
    made: list[int] = []

    def no_client() -> None:
        made.append(1)

    with pytest.raises(NothingWatched, match=r"has nothing to watch: no client .* in tests.prove"):
        hammer(no_client, threads=2, calls=1)
    assert made == []


@pytest.mark.parametrize(
    ("kwargs", "error", "says"),
    [
        ({"threads": 1}, ValueError, "threads must be an int >= 2"),
        ({"calls": 0}, ValueError, "calls must be an int >= 1"),
        ({"timeout": float("inf")}, ValueError, "timeout must be a finite number"),
        ({"timeout": 0}, ValueError, "timeout must be a finite number"),
    ],
)
def test_bad_arguments_are_refused_before_anything_runs(
    kwargs: dict[str, float], error: type[Exception], says: str
) -> None:
    client = MeetingClient()
    with pytest.raises(error, match=says):
        hammer(client.call, **kwargs)  # type: ignore[arg-type]
    assert client.calls == 0


def test_a_target_that_is_not_callable_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="needs a callable, not a int"):
        hammer(42)  # type: ignore[arg-type]
