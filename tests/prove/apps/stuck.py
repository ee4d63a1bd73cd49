"""An app whose request tells the test it is running (its pid and its master's, through the FIFO
named by PROVE_TEST_FIFO), then waits: to interrupt a prove run at a known moment."""

import os
import threading
from collections.abc import Callable

_ONCE = threading.Lock()


def app(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
    if _ONCE.acquire(blocking=False):
        with open(os.environ["PROVE_TEST_FIFO"], "w") as fifo:
            fifo.write(f"{os.getpid()} {os.getppid()}\n")
    threading.Event().wait(60)
    start_response("200 OK", [("Content-Length", "0")])
    return []
