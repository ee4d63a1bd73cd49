"""server/budget.py: the worker's bound on request-body bytes being received (no sockets)."""

from __future__ import annotations

import threading

from server.budget import BodyBudget


def test_take_refuses_what_would_pass_the_limit_and_counts_nothing_then() -> None:
    budget = BodyBudget(100)
    assert budget.take(60) and budget.take(40)
    assert not budget.take(1) and budget.used == 100
    budget.give_back(40)
    assert budget.take(30) and budget.used == 90


def test_concurrent_takes_never_pass_the_limit() -> None:
    """8 threads released together each try 1,000 takes of 1 byte against a limit of 5,000:
    exactly 5,000 succeed."""
    budget, start = BodyBudget(5000), threading.Barrier(8)
    taken = [0] * 8

    def worker(i: int) -> None:
        start.wait(5)
        taken[i] = sum(budget.take(1) for _ in range(1000))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sum(taken) == 5000 == budget.used, f"{sum(taken)} takes, used {budget.used}"
