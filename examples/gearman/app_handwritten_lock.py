"""The hand-written baseline for ``locked``: one client per process behind a lock, pid-checked.

What a careful developer writes without safeclients. The benchmarks compare ``locked`` against
this; note the lock must cover the whole ``submit_job`` call, not just the lookup.
"""

import os
import threading
from typing import Any

import gearman

from examples.gearman._app import make_application, new_client

# Guards _client, _pid and every use of _client.
_client_lock = threading.Lock()
_client: gearman.GearmanClient | None = None
_pid = 0
_created = 0


class _LockedClient:
    """Runs ``submit_job`` on the process's client under the lock (what the app calls)."""

    def submit_job(self, *args: Any, **kwargs: Any) -> Any:
        global _client, _pid, _created
        with _client_lock:
            if _client is None or _pid != os.getpid():
                _client = new_client()  # the parent's client is left alone, not closed
                _pid = os.getpid()
                _created += 1
            return _client.submit_job(*args, **kwargs)

    @property
    def connection_list(self) -> list[Any]:
        with _client_lock:
            return list(_client.connection_list) if _client is not None else []


_facade = _LockedClient()


def _stats() -> dict[str, Any]:
    return {"created": _created}


application = make_application(lambda: _facade, extra_stats=_stats)
