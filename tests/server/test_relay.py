"""The relay (server/relay.py): one core polls, a running core takes the next event itself in
the order epoll gave them, cores take turns, at most ``limit`` run, and the application's code
is not counted.

Unit tests drive :class:`Relay` from threads of this process over a fake epoll (every wait is
bounded; a core "idle" is observed through ``counts()``, polled to a deadline). The
integration tests run a real server with ``--protocol-cores 1`` and an application that needs
several requests inside it at once (a barrier): the call, the body's iteration and the
iterable's ``close()``; had a core stayed counted there, or no idle core been woken, the
barrier would break.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

import pytest

from server.relay import BATCH, Event, Relay, Unlimited
from server.testing import ServerProcess
from tests.server.apps import GATHER_PARTIES
from tests.server.client import get

WAIT = 10.0  # seconds any one wait in these tests may take before it is a failure
LONG = 60.0  # a core's idle or poll timeout that must never run out in a passing test


def until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` (another thread's progress has no event to wait on) to a deadline."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.001)


def start(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def core(relay: Relay, got: list[Event | None] | None = None) -> threading.Thread:
    """A core's first turn on another thread: start(), then one next() (into ``got``)."""

    def turn() -> None:
        relay.start()
        event = relay.next(LONG)
        if got is not None:
            got.append(event)

    return start(turn)


def joined(thread: threading.Thread, what: str) -> None:
    thread.join(WAIT)
    assert not thread.is_alive(), f"still waiting after {WAIT} s: {what}"


class FakeEpoll:
    """``select.epoll.poll`` as the relay calls it: the events put in, first in first out, at
    most ``maxevents`` per poll; blocks (to ``timeout``) while there are none."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._events: list[Event] = []
        self.polls = 0
        self.inside = 0  # cores in poll() now
        self.fail: BaseException | None = None  # raised by the next poll

    def put(self, *events: Event) -> None:
        with self._cond:
            self._events.extend(events)
            self._cond.notify_all()

    def poll(self, timeout: float = -1, maxevents: int = -1) -> list[Event]:
        with self._cond:
            self.polls += 1
            self.inside += 1
            try:
                self._cond.wait_for(lambda: self._events or self.fail, timeout)
            finally:
                self.inside -= 1
            if self.fail is not None:
                exc, self.fail = self.fail, None
                raise exc
            taken = self._events[:maxevents]
            del self._events[:maxevents]
            return taken


def events(count: int) -> list[Event]:
    return [(100 + n, 1) for n in range(count)]


STOP: Event = (-1, 0)  # what the worker's wakeup pipe is to a polling core: look at the flag


class Cores:
    """``count`` core threads, each running a worker's loop over the relay: ``start()``,
    then ``next()`` until stopped, calling ``work(event)`` for each event it gets."""

    def __init__(
        self, epoll: FakeEpoll, limit: int, count: int, work: Callable[[Event], None]
    ) -> None:
        self.epoll = epoll
        self.relay = Relay(epoll, limit)
        self.work = work
        self.served: list[tuple[str, Event]] = []
        self._cond = threading.Condition()
        self._stopping = False
        self.threads = [
            threading.Thread(target=self._loop, name=f"core-{n}", daemon=True) for n in range(count)
        ]
        for thread in self.threads:
            thread.start()

    def _loop(self) -> None:
        relay = self.relay
        relay.start()
        while not self._stopping:
            event = relay.next(LONG)
            if event is None or event == STOP:
                continue
            self.work(event)
            with self._cond:
                self.served.append((threading.current_thread().name, event))
                self._cond.notify_all()
        relay.finish()

    def wait_served(self, count: int) -> None:
        with self._cond:
            done = self._cond.wait_for(lambda: len(self.served) >= count, WAIT)
        assert done, f"{len(self.served)} of {count} events served within {WAIT} s"

    def stop(self) -> None:
        self._stopping = True
        self.relay.stop()
        self.epoll.put(*[STOP] * len(self.threads))
        for thread in self.threads:
            joined(thread, "a core stopping")


def test_a_batch_is_served_in_order_by_the_core_that_polled_it() -> None:
    epoll = FakeEpoll()
    relay = Relay(epoll, 2)
    relay.start()
    epoll.put(*events(3))
    assert relay.next(WAIT) == (100, 1)
    assert relay.counts() == (1, 2, 0, False)  # the rest queued, nobody polling
    assert relay.next(WAIT) == (101, 1)
    assert relay.next(WAIT) == (102, 1)
    assert epoll.polls == 1  # taken from the queue: no poll, no wake-up


def test_a_poll_takes_at_most_a_batch() -> None:
    epoll = FakeEpoll()
    relay = Relay(epoll, 1)
    relay.start()
    epoll.put(*events(BATCH + 3))
    assert relay.next(WAIT) == (100, 1)
    assert relay.counts()[1] == BATCH - 1


def test_a_free_core_goes_idle_while_another_polls_and_polls_next() -> None:
    """The poller that got one event wakes the idle core as the next poller: no other core
    polls meanwhile (the first, done with its event, goes idle), so cores take turns."""
    epoll = FakeEpoll()
    relay = Relay(epoll, 2)
    got: list[Event | None] = []
    poller = core(relay, got)
    until(lambda: epoll.inside == 1, "a core polling")
    idle: list[Event | None] = []
    other = core(relay, idle)
    until(lambda: relay.counts() == (1, 0, 1, True), "the second core idle")
    epoll.put((7, 1))
    joined(poller, "the poller")
    assert got == [(7, 1)]
    until(lambda: epoll.inside == 1, "the woken core polling")
    assert relay.counts() == (2, 0, 0, True)
    epoll.put((8, 1))
    joined(other, "the woken core")
    assert idle == [(8, 1)]


def test_cores_take_turns_one_event_at_a_time() -> None:
    """Events one at a time (light load): every core serves some, in turn, as uWSGI's
    cores do; the main thread's share of requests depends on it (``prove``)."""
    epoll = FakeEpoll()
    cores = Cores(epoll, 2, 4, lambda event: None)
    try:
        for n in range(12):
            epoll.put((100 + n, 1))
            cores.wait_served(n + 1)
    finally:
        cores.stop()
    names = [name for name, _ in cores.served]
    assert set(names) == {"core-0", "core-1", "core-2", "core-3"}, names


def test_at_most_limit_cores_run_and_a_second_takes_from_the_queue() -> None:
    """200 events at once over 6 cores with a limit of 2: the first two events meet at a
    barrier (a second core takes from the queue while the first works), and no more than 2
    cores are ever inside their work."""
    epoll = FakeEpoll()
    meet = threading.Barrier(2, timeout=WAIT)
    lock = threading.Lock()
    inside = most = 0

    def work(event: Event) -> None:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        if event[0] < 102:
            meet.wait()
        time.sleep(0.0005)  # room for a third core to overlap, were one let in
        with lock:
            inside -= 1

    cores = Cores(epoll, 2, 6, work)
    try:
        until(lambda: epoll.inside == 1, "a core polling")
        epoll.put(*events(200))
        cores.wait_served(200)
    finally:
        cores.stop()
    assert most == 2, f"{most} cores inside their work at once"
    assert sorted(event for _, event in cores.served) == events(200)


def test_the_last_running_core_entering_the_application_wakes_an_idle_one() -> None:
    """Limit 1: the only running core pauses (its application waits on a database) while no
    core polls; an idle core is woken, polls, and serves the next event meanwhile."""
    epoll = FakeEpoll()
    relay = Relay(epoll, 1)
    relay.start()  # this thread: the core that will run the application
    served: list[Event | None] = []

    def other() -> None:
        relay.start()
        assert relay.next(LONG) is None  # over the limit: idle, then woken
        served.append(relay.next(LONG))

    thread = start(other)
    until(lambda: relay.counts()[2] == 1, "the other core idle")
    epoll.put((1, 1))
    assert relay.next(WAIT) == (1, 1)
    assert relay.counts() == (1, 0, 1, False)
    assert relay.pause() is True
    epoll.put((2, 1))
    joined(thread, "the idle core, woken by the pause")
    assert served == [(2, 1)]
    relay.resume()
    assert relay.counts() == (2, 0, 0, False)


def test_a_pause_while_another_core_runs_wakes_nobody() -> None:
    """The fast path (a hello-world call): another core runs, so a pause costs no wake-up."""
    epoll = FakeEpoll()
    relay = Relay(epoll, 2)
    relay.start()
    running = threading.Event()
    release = threading.Event()
    busy = start(lambda: (relay.start(), running.set(), release.wait(WAIT)) and None)
    assert running.wait(WAIT)
    idle: list[Event | None] = []
    other = core(relay, idle)
    until(lambda: relay.counts() == (2, 0, 1, False), "the third core idle")
    assert relay.pause() is True
    assert relay.counts() == (1, 0, 1, False)
    relay.resume()
    assert relay.counts() == (2, 0, 1, False)
    release.set()
    joined(busy, "the busy core")
    relay.stop()
    joined(other, "the idle core, woken by stop()")
    assert idle == [None]


def test_stop_wakes_idle_cores_and_none_goes_idle_after() -> None:
    epoll = FakeEpoll()
    relay = Relay(epoll, 1)
    relay.start()
    idle: list[Event | None] = []
    other = core(relay, idle)
    until(lambda: relay.counts()[2] == 1, "the other core idle")
    poller = start(lambda: relay.next(LONG) and None)  # this relay's one running core polls
    until(lambda: epoll.inside == 1, "a core polling")
    relay.stop()
    joined(other, "the idle core, woken by stop()")
    assert idle == [None]
    assert relay.next(LONG) is None  # someone polls: returns at once, no idling
    assert relay.counts()[2] == 0
    epoll.put((9, 1))
    joined(poller, "the poller")


def test_an_exception_in_poll_lets_the_next_core_poll() -> None:
    """A signal's exception on core 0 inside epoll_wait: the core is no longer polling."""
    epoll = FakeEpoll()
    relay = Relay(epoll, 2)
    relay.start()
    epoll.fail = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        relay.next(WAIT)
    assert relay.counts() == (1, 0, 0, False)
    epoll.put((3, 1))
    assert relay.next(WAIT) == (3, 1)


class Interrupted(Exception):
    """Raised in the main thread by the SIGUSR1 handler of the test below."""


def _interrupt(signum: int, frame: object) -> None:
    raise Interrupted()


def test_an_exception_while_idle_leaves_the_line() -> None:
    """Core 0 idle (the main thread, where a signal's handler may raise): it leaves the line
    and counts as running again, so no wake-up goes to a core that is no longer there."""
    epoll = FakeEpoll()
    relay = Relay(epoll, 1)
    poller = core(relay)
    until(lambda: epoll.inside == 1, "a core polling")

    def interrupt_when_idle() -> None:
        until(lambda: relay.counts()[2] == 1, "the main thread idle")
        os.kill(os.getpid(), signal.SIGUSR1)

    previous = signal.signal(signal.SIGUSR1, _interrupt)
    try:
        interrupter = start(interrupt_when_idle)
        relay.start()
        with pytest.raises(Interrupted):
            relay.next(LONG)
        joined(interrupter, "the interrupting thread")
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert relay.counts() == (2, 0, 0, True)
    epoll.put((5, 1))
    joined(poller, "the poller")


def test_an_idle_core_that_times_out_runs_again() -> None:
    epoll = FakeEpoll()
    relay = Relay(epoll, 1)
    relay.start()
    relay.start()  # two cores counted on one thread: the second next() goes idle
    assert relay.next(0.01) is None
    assert relay.counts() == (2, 0, 0, False)


def test_pause_outside_a_core_changes_nothing() -> None:
    relay = Relay(FakeEpoll(), 1)
    assert relay.pause() is False
    assert relay.counts() == (0, 0, 0, False)


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Relay(FakeEpoll(), 0)


def test_unlimited_polls_one_event_per_core_and_counts_nothing() -> None:
    epoll = FakeEpoll()
    relay = Unlimited(epoll)
    relay.start()
    epoll.put(*events(2))
    assert relay.next(WAIT) == (100, 1)
    assert relay.next(WAIT) == (101, 1)
    assert epoll.polls == 2
    assert relay.pause() is False
    assert relay.counts() == (0, 0, 0, False)


# -- on a real server: the application's code is not counted -----------------------


@pytest.mark.integration
@pytest.mark.parametrize("where", ["call", "body", "close"])
def test_the_application_runs_outside_the_count(where: str) -> None:
    """``--protocol-cores 1``, 4 cores: GATHER_PARTIES requests each wait inside the
    application (its call, its body's iteration, or its iterable's close()) until all are
    there. Had a waiting request stayed counted as running, no other core would take an
    event (the limit is 1) and the barrier would break (10 s). A fresh request is served
    meanwhile."""
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
