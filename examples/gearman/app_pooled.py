"""The fix with ``safeclients.pooled``: a bounded pool of clients per process, one per call in
flight.

A call on the proxy checks a client out of the pool, runs, and returns it; a call that raises a
connection error discards its client instead. A request that waits longer than the pool timeout
for a free client gets ``PoolTimeout`` (answered 503 by the app). The size is 4, or
``GEARMAN_POOL_SIZE`` from the environment (the benchmarks compare sizes 1, 2, 4 and 8).
"""

import os

import gearman

import safeclients
from examples.gearman._app import (
    POOL_SIZE_ENV,
    client_is_broken,
    close_client,
    make_application,
    new_client,
)


@safeclients.pooled(
    size=int(os.environ.get(POOL_SIZE_ENV, "4")),
    timeout=10.0,
    close=close_client,
    discard_on=client_is_broken,
)
def client() -> gearman.GearmanClient:
    return new_client()


application = make_application(lambda: client, proxy=client)
