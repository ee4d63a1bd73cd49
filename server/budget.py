"""The worker's budget for request bodies being received: a bound on memory however many
connections send bodies at once.

Bodies are buffered whole before the application runs (:mod:`server.parser`), and the
dispatcher reads every connection's body as it arrives, so without a bound a worker would hold
up to ``--max-connections`` x ``--max-body`` bytes. A :class:`BodyBudget` (one per worker, made
after the fork by the dispatcher) counts the body bytes of requests not yet complete; a
connection whose body would take it past ``--max-body-buffer`` is answered 503 (Service
Unavailable, RFC 9110 §15.6.4) and closed. A body's bytes leave the budget when its request
is complete (a core then holds it: at most ``--threads`` of them) or its connection closes.

Which thread: any core of the worker, for the connection it holds; the lock guards ``used``.
"""

from __future__ import annotations

import threading


class BodyBudget:
    """Bytes of incomplete request bodies a worker holds, bounded by ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()  # guards used
        self.used = 0

    def take(self, count: int) -> bool:
        """Count ``count`` more bytes; False (nothing counted) if they would pass the limit."""
        with self._lock:
            if self.used + count > self.limit:
                return False
            self.used += count
            return True

    def give_back(self, count: int) -> None:
        with self._lock:
            self.used -= count
