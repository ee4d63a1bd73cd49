"""The fix with ``safeclients.per_thread``: every request thread gets its own client.

The global keeps its shape (``client.submit_job(...)``); the proxy builds a client per thread on
first use and closes it when the thread ends. After a fork the worker drops what it inherited
(without closing it: the parent still owns those sockets) and starts fresh.
"""

import safeclients
from examples.gearman._app import close_client, make_application, new_client

client = safeclients.per_thread(new_client, close=close_client)

application = make_application(lambda: client, proxy=client)
