"""SAFECLIENTS_CHECK=1: policies verify their own invariants and raise loudly if violated."""

from __future__ import annotations

import os
import threading
import types
from typing import Any

import pytest

import safeclients
from safeclients._check import Tracker
from safeclients._proxy import policy_of
from tests.lib.fakes import FakeClient, UnsafeClient
from tests.lib.forking import FORKS, run_in_child

JOIN = 30.0


@pytest.fixture
def check_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFECLIENTS_CHECK", "1")


def test_variable_is_read_at_proxy_creation(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = safeclients.per_thread(FakeClient)
    monkeypatch.setenv("SAFECLIENTS_CHECK", "1")
    checking = safeclients.per_thread(FakeClient)
    plain.ping()
    checking.ping()
    assert "ping" in vars(type(plain)), "the plain proxy got its fast forwarder"
    assert "ping" in vars(type(checking)), "check mode runs the forwarders production runs"
    assert policy_of(checking).tracker is not None and policy_of(plain).tracker is None


def test_sabotaged_policy_is_caught(check_mode: None) -> None:
    """A per_thread policy made to hand one instance to every thread must raise."""
    inside, tried = threading.Event(), threading.Event()

    class Waiting(UnsafeClient):
        def wait_inside(self) -> bool:
            inside.set()
            return tried.wait(JOIN)  # stays inside until the other thread has tried

    shared = Waiting()
    proxy = safeclients.per_thread(Waiting)
    policy = policy_of(proxy)
    policy.tracker.created(shared)  # type: ignore[union-attr]
    # Sabotage: one "thread-local" for every thread, so every thread gets `shared`.
    policy._local = types.SimpleNamespace(obj=shared)  # type: ignore[attr-defined]
    caught: list[BaseException] = []
    thread = threading.Thread(target=proxy.wait_inside)
    thread.start()
    try:
        assert inside.wait(JOIN)
        try:
            proxy.echo(1)
        except safeclients.ConcurrentUseError as exc:
            caught.append(exc)
    finally:
        tried.set()
        thread.join(JOIN)
    assert caught, "the invariant check missed an instance shared by threads"
    assert "SAFECLIENTS_CHECK" in str(caught[0])


def test_tracker_reports_two_threads_and_foreign_process() -> None:
    tracker = Tracker("pooled")
    obj = FakeClient()
    tracker.created(obj)
    tracker.enter(obj)
    tracker.enter(obj)  # re-entrant in one thread is fine
    errors: list[BaseException] = []

    def other() -> None:
        try:
            tracker.enter(obj)
        except safeclients.ConcurrentUseError as exc:
            errors.append(exc)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join(JOIN)
    assert len(errors) == 1
    tracker.leave(obj)
    tracker.leave(obj)

    def child() -> Any:
        try:
            tracker.enter(obj)
        except safeclients.ForkedUseError as exc:
            return str(exc)
        return "no error"

    assert "created in process" in run_in_child(FORKS["c_fork"], child)


@pytest.mark.parametrize("fork", sorted(FORKS))
def test_checking_policies_stay_quiet_across_a_fork(check_mode: None, fork: str) -> None:
    proxies = [
        safeclients.per_thread(FakeClient),
        safeclients.locked(FakeClient),
        safeclients.pooled(FakeClient, size=2),
    ]
    for proxy in proxies:
        proxy.ping()
    creators, child_pid = run_in_child(
        FORKS[fork], lambda: [[p.whoami()[1] for p in proxies], os.getpid()]
    )
    assert creators == [child_pid] * 3
