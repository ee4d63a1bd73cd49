"""The seed's story: a module-global counter loses updates under a threaded server; the same
code behind ``safeclients.locked`` loses none.

One worker process (each process has its own count) with 8 threads; 8 client threads send 100
``/incr`` each.
"""

from __future__ import annotations

import json
import threading
import urllib.request

import pytest

from tests.integration.conftest import serve

pytestmark = pytest.mark.integration

CLIENTS = 8
PER_CLIENT = 100
ATTEMPTS = 3


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        count: int = json.load(response)["count"]
        return count


def count_after_load(kind: str, app: str) -> int:
    """Send CLIENTS x PER_CLIENT increments, released together; return the final count."""
    with serve(kind, app, {}, workers=1, threads=8) as srv:
        start = threading.Barrier(CLIENTS)
        errors: list[BaseException] = []

        def hit() -> None:
            start.wait(timeout=30)
            try:
                for _ in range(PER_CLIENT):
                    _get(srv.url + "/incr")
            except OSError as exc:
                errors.append(exc)

        threads = [threading.Thread(target=hit) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "load threads did not finish in 120 s"
        assert not errors, f"requests failed: {errors[:3]}"
        return _get(srv.url + "/count")


@pytest.mark.parametrize("kind", ["ours", "uwsgi"])
def test_unsafe_counter_loses_updates(kind: str) -> None:
    counts = []
    for _ in range(ATTEMPTS):
        counts.append(count_after_load(kind, "examples.counter.app_unsafe:application"))
        if counts[-1] < CLIENTS * PER_CLIENT:
            break
    assert counts[-1] < CLIENTS * PER_CLIENT, (
        f"no update lost under {kind} in {ATTEMPTS} runs of {CLIENTS * PER_CLIENT}: {counts}"
    )


@pytest.mark.parametrize("kind", ["ours", "uwsgi"])
def test_locked_counter_loses_none(kind: str) -> None:
    count = count_after_load(kind, "examples.counter.app_locked:application")
    assert count == CLIENTS * PER_CLIENT, f"{count} of {CLIENTS * PER_CLIENT} increments counted"
