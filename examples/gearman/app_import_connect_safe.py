"""The fork trap, fixed: the same import-time connect, through ``safeclients.locked``.

The master still builds and connects a client at import time (via the proxy), but each worker
notices it runs in a new process and builds its own client on first use, leaving the inherited
one alone (the master owns it). This holds under uWSGI too, where no ``os.register_at_fork``
hook runs in workers: the proxy also checks the pid.
"""

import safeclients
from examples.gearman._app import close_client, connect_now, make_application, new_client

client = safeclients.locked(new_client, close=close_client)
with safeclients.checkout(client) as _raw:
    connect_now(_raw)
del _raw  # the raw client must not stay reachable as a module global

application = make_application(lambda: client, proxy=client)
