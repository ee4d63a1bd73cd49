"""per_thread closes each thread's instance when the thread ends, and keeps no record of it."""

from __future__ import annotations

import gc
import threading
import weakref

import safeclients
from safeclients._proxy import policy_of
from safeclients.per_thread import PerThreadPolicy
from tests.lib.fakes import FakeClient

JOIN = 30.0


def run_threads(count: int, target: object) -> None:
    threads = [threading.Thread(target=target) for _ in range(count)]  # type: ignore[arg-type]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN)
    assert not any(t.is_alive() for t in threads)


def test_200_short_lived_threads_all_closed() -> None:
    made: list[FakeClient] = []
    made_lock = threading.Lock()

    def factory() -> FakeClient:
        client = FakeClient()
        with made_lock:
            made.append(client)
        return client

    proxy = safeclients.per_thread(factory)
    run_threads(200, lambda: proxy.ping())
    assert len(made) == 200
    assert all(c.close_calls == 1 for c in made), "every instance closed exactly once"
    stats = safeclients.stats(proxy)
    assert (stats.created, stats.closed, stats.live) == (200, 200, 0)


def test_1000_exited_threads_leave_no_instance_and_no_record() -> None:
    refs: list[weakref.ref[FakeClient]] = []
    refs_lock = threading.Lock()

    def factory() -> FakeClient:
        client = FakeClient()
        with refs_lock:
            refs.append(weakref.ref(client))
        return client

    proxy = safeclients.per_thread(factory)
    for _ in range(10):
        run_threads(100, lambda: proxy.ping())
    gc.collect()
    policy = policy_of(proxy)
    assert isinstance(policy, PerThreadPolicy)
    assert len(refs) == 1000
    alive = sum(ref() is not None for ref in refs)
    assert alive == 0, f"{alive} instances of exited threads are still referenced"
    assert policy.live() == 0


def test_close_raising_at_thread_exit_is_logged_and_contained(caplog: object) -> None:
    def bad_close(client: FakeClient) -> None:
        raise RuntimeError("close failed")

    proxy = safeclients.per_thread(FakeClient, close=bad_close)
    run_threads(3, lambda: proxy.ping())
    assert "close failed" in caplog.text  # type: ignore[attr-defined]
    assert safeclients.stats(proxy).live == 0
    assert proxy.ping()[1] is None
