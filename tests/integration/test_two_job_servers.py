"""Two job servers in the client's list, one killed under load (issue 11, "Two job servers").

Runs ``examples.gearman.two_servers.run`` (app_pooled on our server, 2 x 8, two fresh gearmands
A and B, 2 workers registered at both) and asserts, phase by phase: 0 wrong results anywhere;
killing A under load fails at most the jobs in flight (at most one per pooled instance: 2
workers x 4); with A down every request fails over to B; after A comes back the app holds
connections to A again and every request succeeds; with B then killed every job must go
through A, and again at most the in-flight ones fail.
"""

from __future__ import annotations

import pytest

from examples.gearman.two_servers import HEADER, run
from examples.support.gearmand import start_gearmand, start_workers

pytestmark = pytest.mark.integration

REQUESTS = 200
IN_FLIGHT_MAX = 2 * 4  # server workers x pool size: jobs that can be on a server when it dies


def test_failover_and_the_killed_server_is_used_again() -> None:
    with start_gearmand() as a, start_gearmand() as b, start_workers(a, 2, also=[b]) as workers:
        phases = {p.name: p for p in run(a, b, workers, requests=REQUESTS)}
    table = "\n".join([HEADER, *(p.row() for p in phases.values())])
    for phase in phases.values():
        assert phase.result.wrong == 0, f"wrong results in phase {phase.name!r}:\n{table}"
    assert phases["both up"].result.failures == 0, table
    assert phases["both up"].clients_a > 0 and phases["both up"].clients_b > 0, table
    assert phases["A killed"].result.failures <= IN_FLIGHT_MAX, table
    assert phases["A down"].result.failures == 0, f"no failover to B:\n{table}"
    assert phases["A back"].result.failures == 0, table
    assert phases["A back"].clients_a > 0, f"no client reconnected to A:\n{table}"
    assert phases["B killed"].result.failures <= IN_FLIGHT_MAX, f"A not used again:\n{table}"
