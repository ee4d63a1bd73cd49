"""Fork safety of every policy, with os.fork() and with a fork from C that runs no hooks."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import safeclients
from safeclients import _fork
from safeclients._proxy import policy_of
from tests.lib.fakes import CloseLog, FakeClient
from tests.lib.forking import FORKS, run_in_child

JOIN = 30.0

POLICIES: dict[str, Callable[..., Any]] = {
    "per_thread": safeclients.per_thread,
    "locked": safeclients.locked,
    "pooled": lambda f, **kw: safeclients.pooled(f, size=2, timeout=10.0, **kw),
}


@pytest.fixture(params=sorted(FORKS))
def fork(request: pytest.FixtureRequest) -> Callable[[], int]:
    return FORKS[request.param]


class HeldInThread:
    """Another thread that took an instance (or the lock) and holds it across the fork."""

    def __init__(self, proxy: Any, *, hold_checkout: bool) -> None:
        self._proxy = proxy
        self._hold_checkout = hold_checkout
        self.ready = threading.Event()
        self.release = threading.Event()
        self.client_id = -1
        self.thread = threading.Thread(target=self._run, name="holder")

    def _run(self) -> None:
        if self._hold_checkout:
            with safeclients.checkout(self._proxy) as client:
                self.client_id = client.id
                self.ready.set()
                self.release.wait(JOIN)
        else:
            self.client_id = self._proxy.ping()[0]
            self.ready.set()
            self.release.wait(JOIN)

    def __enter__(self) -> HeldInThread:
        self.thread.start()
        assert self.ready.wait(JOIN)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release.set()
        self.thread.join(JOIN)


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_child_creates_its_own_instance_and_never_closes_the_parents(
    policy: str, fork: Callable[[], int], tmp_path: Path
) -> None:
    closes = CloseLog(str(tmp_path / "closes"))
    proxy = POLICIES[policy](FakeClient, close=closes)
    parent_id, parent_pid, _ = proxy.whoami()
    hold_checkout = policy == "locked"  # the lock is held by another thread at fork time

    with HeldInThread(proxy, hold_checkout=hold_checkout) as held:

        def child() -> Any:
            return [proxy.whoami(), proxy.whoami(), os.getpid(), safeclients.stats(proxy).created]

        first, second, child_pid, created = run_in_child(fork, child)
        assert first[1] == child_pid, "the child used an instance created in another process"
        assert first[0] not in (parent_id, held.client_id)
        assert second[0] == first[0]
        assert created == 1
        assert [e for e in closes.entries() if e[0] == child_pid] == [], (
            "the child closed an instance"
        )
    assert proxy.whoami()[:2] == (parent_id, parent_pid), "the parent's instance survived"


def test_locked_around_an_instance_refuses_use_in_child(fork: Callable[[], int]) -> None:
    proxy = safeclients.locked(FakeClient())
    proxy.ping()

    def child() -> str:
        try:
            proxy.ping()
        except safeclients.ForkedUseError as exc:
            assert isinstance(exc, safeclients.SafeClientsError)
            return str(exc)
        return "no error"

    message = run_in_child(fork, child)
    assert "factory" in message and str(os.getpid()) in message
    assert proxy.ping()[1] is None, "the parent keeps using its instance"


def test_guarded_with_a_factory_recreates_its_instance_in_the_child(
    fork: Callable[[], int],
) -> None:
    """A client used once at import (warm-up) must not make every worker's request fail."""
    proxy = safeclients.guarded(FakeClient)
    parent_id = proxy.ping()[0]
    child_id, creator, child_pid = run_in_child(
        fork, lambda: [proxy.ping()[0], proxy.whoami()[1], os.getpid()]
    )
    assert child_id != parent_id and creator == child_pid
    assert proxy.ping()[0] == parent_id, "the parent keeps its own instance"


def test_guarded_refuses_an_instance_given_without_factory_from_the_parent(
    fork: Callable[[], int],
) -> None:
    proxy = safeclients.guarded(FakeClient())
    parent_id = proxy.ping()[0]

    def child() -> Any:
        try:
            proxy.ping()
        except safeclients.ForkedUseError as exc:
            return [str(exc), os.getpid()]
        return "no error"

    message, child_pid = run_in_child(fork, child)
    assert str(os.getpid()) in message and str(child_pid) in message
    assert "factory" in message
    assert proxy.ping()[0] == parent_id


def test_guarded_created_first_in_child_is_fine(fork: Callable[[], int]) -> None:
    proxy = safeclients.guarded(FakeClient)
    child_pid, creator = run_in_child(fork, lambda: [os.getpid(), proxy.whoami()[1]])
    assert creator == child_pid


def test_grandchild_of_c_fork_gets_its_own_instance() -> None:
    proxy = safeclients.per_thread(FakeClient)
    proxy.ping()

    def child() -> Any:
        mine = proxy.whoami()
        grandchild = run_in_child(FORKS["c_fork"], lambda: [proxy.whoami(), os.getpid()])
        return [mine, grandchild, os.getpid()]

    mine, (theirs, grandchild_pid), child_pid = run_in_child(FORKS["c_fork"], child)
    assert mine[1] == child_pid and theirs[1] == grandchild_pid


def test_dispose_in_child_does_not_close_parent_instances(
    fork: Callable[[], int], tmp_path: Path
) -> None:
    closes = CloseLog(str(tmp_path / "closes"))
    proxy = safeclients.pooled(FakeClient, size=2, close=closes)
    proxy.ping()
    child_pid = run_in_child(fork, lambda: [safeclients.dispose(proxy, final=True), os.getpid()][1])
    assert [e for e in closes.entries() if e[0] == child_pid] == []
    assert proxy.ping()[1] is None


def test_fork_detection_byte() -> None:
    assert _fork.ARMED[0], "armed in a process that has not forked"
    pid_byte = _fork._PidByte()
    assert pid_byte[0] == 1

    def child() -> Any:
        return [_fork.WIPEONFORK and _fork.ARMED[0], pid_byte[0]]

    # With no proxy call in the child, nothing re-armed the page yet (C fork: no hooks).
    wiped, fallback = run_in_child(FORKS["c_fork"], child)
    assert not wiped
    assert fallback == 0


@pytest.mark.parametrize("policy", ["per_thread", "pooled"])
def test_internal_lock_held_at_fork_does_not_block_the_child(
    policy: str, fork: Callable[[], int]
) -> None:
    """White-box: another thread holds the policy's own internal lock while we fork."""
    proxy = POLICIES[policy](FakeClient)
    proxy.ping()
    internal = policy_of(proxy)
    lock = internal._records_lock if policy == "per_thread" else internal._cond
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            holding.set()
            release.wait(JOIN)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(JOIN)
        child_pid, creator = run_in_child(fork, lambda: [os.getpid(), proxy.whoami()[1]])
        assert creator == child_pid
    finally:
        release.set()
        thread.join(JOIN)


class Finalized(FakeClient):
    """Notes its finalization (the way mysqlclient's dealloc sends QUIT) in the process's
    ``FINALIZED`` list."""

    def __del__(self) -> None:
        FINALIZED.append(self.id)


FINALIZED: list[int] = []


@pytest.mark.parametrize("policy", [*sorted(POLICIES), "per_process"])
def test_child_keeps_inherited_instances_unfinalized(policy: str, fork: Callable[[], int]) -> None:
    import gc

    make = POLICIES.get(policy, safeclients.per_process)
    proxy = make(Finalized)
    parent_id = proxy.whoami()[0]

    def child() -> Any:
        FINALIZED.clear()
        proxy.whoami()  # the reset drops the parent's instance: it must not be finalized
        gc.collect()
        return [FINALIZED, [getattr(obj, "id", None) for obj in _fork.INHERITED]]

    finalized, kept = run_in_child(fork, child)
    assert parent_id not in finalized, "the child finalized the parent's instance"
    assert parent_id in kept
    assert proxy.whoami()[0] == parent_id
    safeclients.dispose(proxy)
