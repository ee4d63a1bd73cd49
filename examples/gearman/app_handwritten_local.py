"""The hand-written baseline for ``per_thread``: a fork-aware ``threading.local``.

What a careful developer writes without safeclients: a thread-local client, rebuilt when the
process id changes (uWSGI's default loading runs no ``os.register_at_fork`` hooks, and serves
some requests on each worker's main thread, which still holds the master's thread-local values).
The benchmarks compare ``per_thread`` against this.
"""

import os
import threading
from typing import Any

import gearman

from examples.gearman._app import make_application, new_client

_local = threading.local()
# Guards _created (a counter read by /stats; += from several threads).
_created_lock = threading.Lock()
_created = 0


def get_client() -> gearman.GearmanClient:
    """This thread's client in this process; a new one after a fork or on first use."""
    global _created
    pid = os.getpid()
    if getattr(_local, "pid", None) != pid:
        _local.client = new_client()  # the inherited one belongs to the parent: not closed
        _local.pid = pid
        with _created_lock:
            _created += 1
    client: gearman.GearmanClient = _local.client
    return client


def _stats() -> dict[str, Any]:
    return {"created": _created}


application = make_application(get_client, extra_stats=_stats)
