"""The fix with ``safeclients.locked``: one client per process, one request at a time in it.

Each call on the proxy (``submit_job``) runs under the proxy's lock; a pygearman call is
self-contained (it submits and polls until the result), so holding the lock for the call is
enough. One connection per worker process; threads queue on the lock.
"""

import gearman

import safeclients
from examples.gearman._app import client_is_broken, close_client, make_application, new_client


@safeclients.locked(close=close_client, discard_on=client_is_broken)
def client() -> gearman.GearmanClient:
    return new_client()


application = make_application(lambda: client, proxy=client)
