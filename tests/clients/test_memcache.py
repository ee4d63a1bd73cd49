"""pymemcache's base Client shared by 16 threads, against a real memcached."""

from __future__ import annotations

import threading

import pytest

import safeclients
from examples.clients import memcache_values
from examples.clients.hammer import SAFE_POLICIES
from examples.support.memcached import Memcached
from tests.clients.support import THREADS, assert_clean, until_trap

pytestmark = pytest.mark.integration

#: The shared client loses replies and the thread waiting for one times out: keep that short.
TRAP_TIMEOUT = 0.5
TRAP_OPS = 15
OPS = 60


def test_unwrapped_client_fails(memcached: Memcached) -> None:
    tally = until_trap(
        lambda: memcache_values.run(
            "unsafe", memcached.address, ops=TRAP_OPS, timeout=TRAP_TIMEOUT, deadline=15.0
        ),
        lambda t: t.failures > 0,
        "a wrong value or protocol error",
    )
    assert tally.ok < THREADS * TRAP_OPS


def test_detector_counts_the_overlap(memcached: Memcached) -> None:
    tally = until_trap(
        lambda: memcache_values.run(
            "guarded", memcached.address, ops=TRAP_OPS, timeout=TRAP_TIMEOUT, deadline=15.0
        ),
        lambda t: t.conflicts > 0,
        "a conflict counted by guarded()",
    )
    assert tally.conflicts > 0


def test_detector_raises_naming_both_threads(memcached: Memcached) -> None:
    client = safeclients.guarded(lambda: memcache_values.connect(memcached.address))
    errors: list[safeclients.ConcurrentUseError] = []
    start = threading.Barrier(THREADS)

    def work(index: int) -> None:
        start.wait(timeout=30)
        for op in range(20):
            try:
                memcache_values.round_trip(client, index, op)
            except safeclients.ConcurrentUseError as exc:
                errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(i,), name=f"request-{i}") for i in range(THREADS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    safeclients.dispose(client, final=True)
    assert errors, "16 threads x 20 round trips on one guarded client never overlapped"
    message = str(errors[0])
    assert message.count("request-") >= 2, message
    assert ".set()" in message or ".get()" in message, message


@pytest.mark.parametrize("policy", SAFE_POLICIES)
def test_policy_has_no_failures(memcached: Memcached, checking: None, policy: str) -> None:
    tally = memcache_values.run(policy, memcached.address, ops=OPS)
    assert_clean(policy, tally, OPS)
