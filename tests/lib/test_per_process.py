"""``per_process``: one instance per process, shared by its threads, never across a fork."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import pytest

import safeclients
from tests.lib.fakes import BrokenConnectionError, FakeClient
from tests.lib.forking import FORKS, run_in_child

JOIN = 30.0

pytestmark = pytest.mark.usefixtures("call_path")


class Meeting(FakeClient):
    """Two callers meet inside ``meet``: proves that calls are not serialized."""

    def __init__(self) -> None:
        super().__init__()
        self.barrier = threading.Barrier(2)

    def meet(self) -> int:
        self.barrier.wait(JOIN)
        return self.id


def test_threads_share_one_instance_without_a_lock() -> None:
    proxy = safeclients.per_process(Meeting)
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(proxy.meet())) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN)
    assert len(results) == 2 and len(set(results)) == 1, "both inside one instance at once"
    assert safeclients.stats(proxy).created == 1


@pytest.mark.parametrize("fork", FORKS.values(), ids=FORKS.keys())
def test_a_fork_child_gets_its_own_instance_and_closes_nothing(fork: Callable[[], int]) -> None:
    proxy = safeclients.per_process(FakeClient)
    parent_id = proxy.ping()[0]

    def child() -> Any:
        return [proxy.whoami()[0], proxy.whoami()[1], os.getpid()]

    child_id, creator, child_pid = run_in_child(fork, child)
    assert child_id != parent_id and creator == child_pid
    with safeclients.checkout(proxy) as parent_client:
        assert parent_client.id == parent_id and parent_client.close_calls == 0


def test_a_broken_instance_is_replaced() -> None:
    proxy = safeclients.per_process(FakeClient)
    first = proxy.ping()[0]
    with pytest.raises(BrokenConnectionError):
        proxy.fail(BrokenConnectionError())
    assert proxy.ping()[0] != first
    assert safeclients.stats(proxy).discarded == 1
