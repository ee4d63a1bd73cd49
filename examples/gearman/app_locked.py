"""The fix with ``safeclients.locked``: one client per process, one request at a time in it.

Each call on the proxy (``submit_job``) runs under the proxy's lock; a pygearman call is
self-contained (it submits and polls until the result), so holding the lock for the call is
enough. One connection per worker process; threads queue on the lock.
"""

import safeclients
from examples.gearman._app import close_client, make_application, new_client

client = safeclients.locked(new_client, close=close_client)

application = make_application(lambda: client, proxy=client)
