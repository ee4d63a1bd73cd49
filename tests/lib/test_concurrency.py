"""32 threads released together by a Barrier hammer a deliberately non-thread-safe client.

The unwrapped client must show overlaps (so the test proves it has the power to see them); each
policy must show none, with every result correct.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

import safeclients
from tests.lib.fakes import UnsafeClient

THREADS = 32
CALLS = 150
# Every test here runs over both call paths (tests/lib/conftest.py).
pytestmark = pytest.mark.usefixtures("call_path")

JOIN = 60.0


def hammer(call: Callable[[Any], Any]) -> tuple[int, int]:
    """Run CALLS calls in each of THREADS threads; return (wrong results, errors)."""
    barrier = threading.Barrier(THREADS)
    wrong = [0] * THREADS
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(JOIN)
            for n in range(CALLS):
                value = (index, n)
                if call(value) != value:
                    wrong[index] += 1
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN)
    assert not any(t.is_alive() for t in threads), "a hammering thread is stuck"
    assert not errors, f"{len(errors)} threads raised, first: {errors[0]!r}"
    return sum(wrong), len(errors)


# The control run depends on the scheduler interleaving threads: bounded retries, so a quiet
# moment on a loaded machine does not fail it, while a client that cannot overlap still does.
CONTROL_ATTEMPTS = 3


def test_unwrapped_client_shows_overlaps() -> None:
    for _ in range(CONTROL_ATTEMPTS):
        client = UnsafeClient()
        wrong, _ = hammer(client.echo)
        if client.overlaps > 0 and wrong > 0:
            break
    assert client.overlaps > 0, (
        f"the fake client never overlapped in {CONTROL_ATTEMPTS} runs of {THREADS} x {CALLS} "
        f"calls: this suite has no power"
    )
    assert wrong > 0, f"{client.overlaps} overlaps but no wrong result"


@pytest.mark.parametrize(
    "make",
    [
        safeclients.per_thread,
        safeclients.locked,
        lambda f: safeclients.pooled(f, size=4, timeout=60.0),
        lambda f: safeclients.pooled(f, size=1, timeout=60.0),
    ],
    ids=["per_thread", "locked", "pooled4", "pooled1"],
)
def test_policy_shows_no_overlap(make: Callable[[Callable[[], UnsafeClient]], Any]) -> None:
    instances: list[UnsafeClient] = []
    instances_lock = threading.Lock()

    def factory() -> UnsafeClient:
        client = UnsafeClient()
        with instances_lock:
            instances.append(client)
        return client

    proxy = make(factory)
    wrong, _ = hammer(proxy.echo)
    overlaps = sum(c.overlaps for c in instances)
    assert overlaps == 0, f"{overlaps} overlapping calls through {safeclients.policy_name(proxy)}"
    assert wrong == 0, f"{wrong} wrong results"
    stats = safeclients.stats(proxy)
    assert stats.created == len(instances)
    if safeclients.policy_name(proxy) == "pooled":
        assert stats.created <= 4


def test_checkout_blocks_show_no_overlap() -> None:
    instances: list[UnsafeClient] = []
    proxy = safeclients.pooled(
        lambda: instances.append(UnsafeClient()) or instances[-1], size=3, timeout=60.0
    )

    def call(value: Any) -> Any:
        with safeclients.checkout(proxy) as client:
            first = client.echo(value)
            return client.echo(first)

    wrong, _ = hammer(call)
    assert wrong == 0 and sum(c.overlaps for c in instances) == 0


def test_safeclients_check_passes_for_correct_policies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFECLIENTS_CHECK", "1")
    for proxy in (
        safeclients.per_thread(UnsafeClient),
        safeclients.locked(UnsafeClient),
        safeclients.pooled(UnsafeClient, size=2, timeout=60.0),
    ):
        wrong, _ = hammer(proxy.echo)
        assert wrong == 0
