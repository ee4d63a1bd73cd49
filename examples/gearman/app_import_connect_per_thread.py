"""The fork trap, fixed with ``safeclients.per_thread``: import-time connect in the master's
main thread; after the fork every request thread (including a worker's main thread, which under
uWSGI still holds the master's thread-local value) gets a client of its own process.
"""

import safeclients
from examples.gearman._app import close_client, connect_now, make_application, new_client

client = safeclients.per_thread(new_client, close=close_client)
with safeclients.checkout(client) as _raw:
    connect_now(_raw)
del _raw  # the raw client must not stay reachable as a module global

application = make_application(lambda: client, proxy=client)
