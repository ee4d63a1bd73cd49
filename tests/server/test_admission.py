"""Admission (server/admission.py): at most ``limit`` cores do HTTP work at once, served in
arrival order, and the application's code never holds a permit.

Unit tests drive :class:`Admission` from threads of this process (waits are bounded; a
core "waiting in line" is observed through ``counts()``, polled to a deadline). The
integration tests run a real server with ``--protocol-cores 1`` and an application that
needs several requests inside it at once (a barrier): the call, the body's iteration and the
iterable's ``close()``; with a permit held there, the barrier breaks.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from server.admission import Admission
from server.testing import ServerProcess
from tests.server.apps import GATHER_PARTIES
from tests.server.client import get

WAIT = 10.0  # seconds any one wait in these tests may take before it is a failure


def until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` (another thread's progress has no event to wait on) to a deadline."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.001)


def waiting(admission: Admission, count: int) -> Callable[[], bool]:
    return lambda: admission.counts()[2] == count


def start(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_at_most_limit_cores_hold_a_permit() -> None:
    admission = Admission(2)
    inside = 0
    most = 0
    count_lock = threading.Lock()

    def core() -> None:
        nonlocal inside, most
        for _ in range(300):
            with admission:
                with count_lock:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0)  # let the others run while this one holds a permit
                with count_lock:
                    inside -= 1

    threads = [start(core) for _ in range(6)]
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive()
    assert most == 2, f"{most} cores held a permit at once (limit 2)"
    assert admission.counts() == (0, 0, 0)


def test_permits_go_to_waiting_cores_in_arrival_order_and_none_overtakes() -> None:
    admission = Admission(1)
    order: list[str] = []
    admission.enter()  # this thread holds the only permit

    def core(name: str) -> Callable[[], None]:
        def run() -> None:
            with admission:
                order.append(name)

        return run

    threads = []
    for count, name in enumerate("abc", start=1):
        threads.append(start(core(name)))
        until(waiting(admission, count), f"core {name} waiting in line")
    admission.leave()  # handed to a: the count stays at the limit, so...
    late = start(core("late"))  # ...a core arriving now waits behind b and c
    for thread in [*threads, late]:
        thread.join(WAIT)
        assert not thread.is_alive()
    assert order == ["a", "b", "c", "late"]
    assert admission.counts() == (0, 0, 0)


def test_a_paused_permit_is_taken_back_without_waiting_when_nobody_came() -> None:
    admission = Admission(1)
    with admission:
        assert admission.pause()
        assert not admission.holds()
        assert admission.counts() == (1, 1, 0)  # lent
        admission.enter()  # taken back: nothing to wait for
        assert admission.holds()
        assert admission.counts() == (1, 0, 0)
    assert admission.counts() == (0, 0, 0)


def test_a_core_arriving_takes_a_lent_permit_and_the_lender_waits_for_it() -> None:
    admission = Admission(1)
    got_it = threading.Event()
    release = threading.Event()

    def arriving() -> None:
        with admission:  # the lent permit: no wait
            got_it.set()
            assert release.wait(WAIT)

    admission.enter()
    assert admission.pause()  # this thread now "runs the application"
    other = start(arriving)
    assert got_it.wait(WAIT), "a core arriving waited although a permit was lent"
    back = start(admission.enter)  # the lender, back from the application: waits
    until(waiting(admission, 1), "the lender waiting for a permit")
    release.set()
    back.join(WAIT)
    other.join(WAIT)
    assert not back.is_alive() and not other.is_alive()
    assert admission.counts() == (1, 0, 0)  # held by the thread that ran ``back``


def test_pause_hands_the_permit_to_a_core_waiting_in_line() -> None:
    admission = Admission(1)
    served = threading.Event()
    admission.enter()
    waiter = start(lambda: (admission.enter(), served.set(), admission.leave()))
    until(waiting(admission, 1), "a core waiting in line")
    assert admission.pause()
    assert served.wait(WAIT), "pause() did not hand the permit to the core in line"
    waiter.join(WAIT)
    admission.enter()
    admission.leave()
    assert admission.counts() == (0, 0, 0)


def test_pause_without_a_permit_changes_nothing() -> None:
    admission = Admission(1)
    assert not admission.pause()
    assert admission.counts() == (0, 0, 0)


class Interrupted(Exception):
    """Raised in the main thread by the SIGUSR1 handler of :func:`interrupting_main`."""


@contextlib.contextmanager
def interrupting_main(admission: Admission) -> Iterator[None]:
    """Core 0 is the main thread, where a signal handler's exception can interrupt a wait:
    once the main thread waits in line, a SIGUSR1 makes its handler raise Interrupted."""

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted

    main = threading.main_thread().ident
    assert main is not None
    previous = signal.signal(signal.SIGUSR1, interrupt)
    try:
        kicker = start(
            lambda: (
                until(waiting(admission, 1), "the main thread waiting"),
                signal.pthread_kill(main, signal.SIGUSR1),
            )
        )
        try:
            yield
        finally:
            kicker.join(WAIT)
    finally:
        signal.signal(signal.SIGUSR1, previous)


@contextlib.contextmanager
def held_by_another(admission: Admission) -> Iterator[None]:
    """Another thread takes a permit (waiting for it if it must) and holds it until exit."""
    taken, done = threading.Event(), threading.Event()

    def hold() -> None:
        with admission:
            taken.set()
            assert done.wait(WAIT)

    thread = start(hold)
    try:
        assert taken.wait(WAIT), "the other thread never got a permit"
        yield
    finally:
        done.set()
        thread.join(WAIT)
        assert not thread.is_alive()


def test_an_exception_while_waiting_leaves_the_line() -> None:
    admission = Admission(1)
    with held_by_another(admission):
        with interrupting_main(admission), pytest.raises(Interrupted):
            admission.enter()
        assert not admission.holds()
        assert admission.counts() == (1, 0, 0)  # out of the line; the holder's permit only
    assert admission.counts() == (0, 0, 0)


def test_a_with_whose_re_entry_was_interrupted_gives_back_nothing() -> None:
    """The core's ``with admission:`` wraps the application's call, whose permit is lent
    (pause) and taken again (enter) after it. If that enter() is interrupted while waiting
    (a signal's exception on core 0), the ``with`` exits holding no permit: its leave() must
    not give one back (it would let a third core in under a limit of one, for good)."""
    admission = Admission(1)
    with contextlib.ExitStack() as stack:
        with pytest.raises(Interrupted), admission:
            assert admission.pause()  # the application's call begins...
            stack.enter_context(held_by_another(admission))  # ...another core takes the permit
            with interrupting_main(admission):
                admission.enter()  # back from the application: waits, interrupted
        assert admission.counts() == (1, 0, 0), "the interrupted with gave back a permit"
    assert admission.counts() == (0, 0, 0)


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Admission(0)


# -- on a real server: the application's code runs without a permit -----------------------


@pytest.mark.integration
@pytest.mark.parametrize("where", ["call", "body", "close"])
def test_the_application_runs_without_a_permit(where: str) -> None:
    """``--protocol-cores 1``, 4 cores: GATHER_PARTIES requests each wait inside the
    application (its call, its body's iteration, or its iterable's close()) until all are
    there. Had a request held the only permit while waiting, no other would reach the
    application and the barrier would break (10 s). A fresh request is served meanwhile."""
    with ServerProcess(
        "tests.server.apps:router",
        workers=1,
        threads=GATHER_PARTIES + 1,
        args=["--protocol-cores", "1"],
    ) as srv:
        after = srv.log_position()
        bodies: list[bytes] = []
        errors: list[BaseException] = []

        def request() -> None:
            try:
                bodies.append(get(srv.host, srv.port, f"/gather?in={where}", timeout=20).body)
            except BaseException as exc:  # reported below, with the others
                errors.append(exc)

        threads = [start(request) for _ in range(GATHER_PARTIES)]
        assert get(srv.host, srv.port, "/hello").status == 200
        for thread in threads:
            thread.join(20)
            assert not thread.is_alive()
        assert not errors, errors
        if where == "close":
            lines = srv.wait_for_lines(r"^close (gathered|alone)", GATHER_PARTIES, after=after)
            assert all("gathered" in line for line in lines), lines
            assert bodies == [b"body\n"] * GATHER_PARTIES
        else:
            assert bodies == [b"gathered\n"] * GATHER_PARTIES
