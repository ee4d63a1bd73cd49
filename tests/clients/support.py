"""Assertions shared by the client tests."""

from __future__ import annotations

from collections.abc import Callable

from examples.clients.hammer import POOL_SIZE, Tally

#: The trap shows up at once in practice; a few attempts keep a loaded CI machine from turning
#: "the threads happened not to overlap" into a failure.
ATTEMPTS = 3
THREADS = 16


def until_trap(run: Callable[[], Tally], seen: Callable[[Tally], bool], what: str) -> Tally:
    """Run ``run`` up to ATTEMPTS times until ``seen(tally)``; fail with every summary."""
    summaries = []
    for _ in range(ATTEMPTS):
        tally = run()
        if seen(tally):
            return tally
        summaries.append(tally.summary())
    raise AssertionError(f"{what} not seen in {ATTEMPTS} runs of {THREADS} threads: {summaries}")


def assert_clean(policy: str, tally: Tally, ops: int) -> None:
    """No failure, every op answered, and the policy made the instances it promises."""
    assert tally.failures == 0 and tally.ok == THREADS * ops, (
        f"{policy}: {tally.summary()}; first errors: {tally.examples}"
    )
    assert tally.stats is not None
    created = tally.stats.created
    if policy == "locked":
        assert created == 1, f"locked made {created} instances, expected 1"
    elif policy == "per_thread":
        assert created == THREADS, f"per_thread made {created} instances for {THREADS} threads"
    else:
        assert 1 <= created <= POOL_SIZE, f"pooled made {created} instances, size {POOL_SIZE}"
