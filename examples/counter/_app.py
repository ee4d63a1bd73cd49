"""WSGI plumbing for the counter examples (the seed's story: a module-global ``count``).

Routes: ``/incr`` adds one and answers the new value; ``/count`` answers the current value and
the pid (each worker process has its own count: a second surprise of pre-forking servers).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

StartResponse = Callable[..., Any]

# Stands in for the I/O a real view does between reading and writing the global (a cache read,
# a log line, a database call): any call that releases the GIL lets another thread read the
# same old value. Seconds.
IO_PAUSE = float(os.environ.get("COUNTER_IO_PAUSE", "0.0005"))


def slow_io() -> None:
    """The function call between read and write (see IO_PAUSE)."""
    time.sleep(IO_PAUSE)


def _json(start_response: StartResponse, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


def make_application(
    increment: Callable[[], int], current: Callable[[], int]
) -> Callable[..., Iterable[bytes]]:
    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/incr":
            return _json(start_response, {"count": increment(), "pid": os.getpid()})
        return _json(start_response, {"count": current(), "pid": os.getpid()})

    return application
