"""``examples/gearman/app_pooled.py`` with the pool size read from ``SAFECLIENTS_POOL_SIZE``.

The end-to-end section compares pool sizes 1, 2, 4 and 8; the example app fixes its size at 4,
so the benchmark serves this twin, built from the same plumbing (``examples.gearman._app``) with
the same timeout and close function. Imported in each server worker (after the fork when the
server imports lazily, before it otherwise: the pool is fork-safe either way).
"""

import os

import safeclients
from examples.gearman._app import close_client, make_application, new_client

POOL_SIZE_ENV = "SAFECLIENTS_POOL_SIZE"

client = safeclients.pooled(new_client, size=int(os.environ.get(POOL_SIZE_ENV, "4")),
                            timeout=10.0, close=close_client)

application = make_application(lambda: client, proxy=client)
