"""The fix with ``safeclients.per_thread``: every request thread gets its own client.

The global keeps its shape (``client.submit_job(...)``); the decorator turns the factory into a
module-level proxy that builds a client per thread on first use and closes it when the thread
ends. After a fork the worker drops what it inherited (without closing it: the parent still owns
those sockets) and starts fresh.
"""

import gearman

import safeclients
from examples.gearman._app import client_is_broken, close_client, make_application, new_client


@safeclients.per_thread(close=close_client, discard_on=client_is_broken)
def client() -> gearman.GearmanClient:
    return new_client()


application = make_application(lambda: client, proxy=client)
