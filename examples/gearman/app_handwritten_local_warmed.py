"""The hand-written ``threading.local`` fix, with the warm-up call real apps make at import.

What a developer writes after reading "GearmanClient is not thread-safe": one client per
thread, in a ``threading.local``. And, as real apps do (a warm-up call, a health check at
start), the module touches its client once at import time, so the first request does not pay
for the connect::

    _local = threading.local()

    def get_client():
        if not hasattr(_local, "client"):
            _local.client = connect_now(new_client())
        return _local.client

    get_client()   # warm-up at import: connects, in the importing thread

It looks right and passes every threaded test. Under a server that imports the app in the master
and forks (uWSGI's default loading, ``python -m server``), it fails: the warm-up ran on the
master's main thread, so the master's ``_local`` holds a connected client. Each worker is forked
from that thread, and a worker's main thread serves requests too (uWSGI's core 0,
``uwsgi_loop_cores_run()``), so about one request in M (M = threads per worker) runs on a thread
whose ``threading.local`` still holds the master's client: every worker's main thread uses the
same inherited socket. ``/conn`` shows one local port from two worker pids, and under load
replies land in the wrong process (wrong results, timeouts). The other threads are fine, which
is why the bug hides.

Compare ``app_handwritten_local`` (the same idea with a pid check, which survives the fork) and
the safeclients policies touched at import (``app_import_connect_per_thread``,
``app_import_connect_safe``, ``app_import_connect_pooled``), which hold.
"""

import threading

import gearman

from examples.gearman._app import connect_now, make_application, new_client

_local = threading.local()


def get_client() -> gearman.GearmanClient:
    """This thread's client, built and connected on first use in the thread."""
    client: gearman.GearmanClient | None = getattr(_local, "client", None)
    if client is None:
        client = _local.client = connect_now(new_client())
    return client


get_client()  # the warm-up at import: in the master, on its main thread, before any fork

application = make_application(get_client)
