"""The fork trap, fixed with ``safeclients.pooled``: the same import-time connect (a warm-up
call in the master's main thread), through a pool. After the fork each worker notices it runs in
a new process (the proxy checks the pid, so this holds under uWSGI too, where no
``os.register_at_fork`` hook runs in workers) and fills a pool of its own, leaving the
inherited client alone (the master owns it).
"""

import safeclients
from examples.gearman._app import (
    client_is_broken,
    close_client,
    connect_now,
    make_application,
    new_client,
)

client = safeclients.pooled(
    new_client, size=4, timeout=10.0, close=close_client, discard_on=client_is_broken
)
with safeclients.checkout(client) as _raw:
    connect_now(_raw)
del _raw  # the raw client must not stay reachable as a module global

application = make_application(lambda: client, proxy=client)
