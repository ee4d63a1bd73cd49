"""Running a call in another thread, for the library's unit tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

#: Seconds a test waits for a thread it started (bounded: a hang fails, never blocks the run).
JOIN = 30.0


def in_thread(func: Callable[[], Any]) -> Any:
    """Run func in a new thread and return its result (re-raising its exception)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = func()
        except BaseException as exc:  # handed back to the test thread
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(JOIN)
    assert not thread.is_alive(), "worker thread did not finish"
    if "error" in box:
        raise box["error"]
    return box["result"]
