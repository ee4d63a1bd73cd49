"""The read-only record ``safeclients.stats(proxy)`` returns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stats:
    """Counters of one proxy, in this process (a fork child starts from zero).

    ``live`` is the number of instances the proxy currently holds (idle or in use); ``waits`` and
    ``wait_seconds`` count checkouts that had to wait (``pooled``: no free instance; ``locked``:
    the lock was held by another thread); ``conflicts`` counts overlapping uses seen by
    ``guarded`` (or by any policy under ``SAFECLIENTS_CHECK=1``). ``closed`` and ``discarded``
    count only closes that succeeded.
    """

    policy: str
    created: int
    closed: int
    discarded: int
    live: int
    waits: int
    wait_seconds: float
    conflicts: int
    #: Closes that raised (logged once each): the instance was dropped, not counted as closed.
    close_failed: int = 0
