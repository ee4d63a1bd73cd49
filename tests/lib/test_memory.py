"""Memory over many short-lived threads (issue 6): marked soak, it takes a minute or two."""

from __future__ import annotations

import threading

import psutil
import pytest

import safeclients
from tests.lib.fakes import FakeClient

JOIN = 30.0
MIB = 1024 * 1024


def churn(proxy: FakeClient, threads: int, batch: int = 50) -> None:
    for _ in range(threads // batch):
        group = [threading.Thread(target=proxy.ping) for _ in range(batch)]
        for thread in group:
            thread.start()
        for thread in group:
            thread.join(JOIN)


@pytest.mark.soak
def test_rss_flat_over_100000_short_lived_threads() -> None:
    proxy = safeclients.per_thread(FakeClient)
    process = psutil.Process()
    churn(proxy, 1_000)
    after_1000 = process.memory_info().rss
    churn(proxy, 99_000)
    after_100000 = process.memory_info().rss
    stats = safeclients.stats(proxy)
    print(
        f"RSS after 1,000 threads {after_1000 / MIB:.1f} MiB, "
        f"after 100,000 {after_100000 / MIB:.1f} MiB; {stats}"
    )
    assert stats.live == 0 and stats.created == stats.closed == 100_000
    assert after_100000 - after_1000 < 5 * MIB
