"""The fix with ``safeclients.pooled``: up to 4 clients per process, one per call in flight.

A call on the proxy checks a client out of a bounded pool, runs, and returns it; a call that
raises a connection error discards its client instead. A request that waits longer than the pool
timeout for a free client gets ``PoolTimeout`` (answered 503 by the app).
"""

import safeclients
from examples.gearman._app import close_client, make_application, new_client

client = safeclients.pooled(new_client, size=4, timeout=10.0, close=close_client)

application = make_application(lambda: client, proxy=client)
