"""The requests ``prove`` sends: ``requests`` GETs over ``paths`` (round robin), from
``concurrency`` threads at once, each on its own keep-alive connection.

Bounded in count (``requests``) and in time: each request waits at most ``timeout`` seconds
for its connection and its answer, and the whole run stops starting requests after
``deadline`` seconds; the threads are joined with a bound too. A request that gets no answer
(refused, reset, timed out) is counted by the exception's name, never retried.

Runs in the CLI's process: the threads started here are daemons, joined before it returns.
"""

from __future__ import annotations

import http.client
import itertools
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Sequence

__all__ = ["Tally", "send"]

Tally = Counter[str]  # "200" -> count, "error: TimeoutError" -> count, "not sent" -> count


def send(
    url: str,
    paths: Sequence[str],
    *,
    requests: int,
    concurrency: int,
    timeout: float,
    deadline: float,
) -> Tally:
    """Send the requests; return how many got each status (module docstring)."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    numbers = itertools.count()  # next() is atomic under the GIL: each request taken once
    stop_at = time.monotonic() + deadline
    tallies = [Counter[str]() for _ in range(concurrency)]
    start = threading.Barrier(concurrency)

    def run(tally: Tally) -> None:
        try:
            start.wait(timeout)
        except threading.BrokenBarrierError:
            pass  # a thread did not start in time: the others go on without it
        connection: http.client.HTTPConnection | None = None
        try:
            while True:
                number = next(numbers)
                if number >= requests:
                    return
                if time.monotonic() >= stop_at:
                    tally["not sent"] += 1
                    continue
                if connection is None:
                    connection = http.client.HTTPConnection(host, port, timeout=timeout)
                try:
                    connection.request("GET", paths[number % len(paths)])
                    response = connection.getresponse()
                    response.read()
                except (OSError, http.client.HTTPException) as exc:
                    tally[f"error: {type(exc).__name__}"] += 1
                    connection.close()
                    connection = None
                    continue
                tally[str(response.status)] += 1
                if response.will_close:
                    connection.close()
                    connection = None
        finally:
            if connection is not None:
                connection.close()

    threads = [
        threading.Thread(target=run, args=(tally,), name=f"prove-load-{i}", daemon=True)
        for i, tally in enumerate(tallies)
    ]
    for thread in threads:
        thread.start()
    join_by = stop_at + 2 * timeout
    for thread in threads:
        thread.join(max(0.0, join_by - time.monotonic()))
    total: Tally = Counter()
    for tally in tallies:
        total.update(tally)
    stuck = sum(thread.is_alive() for thread in threads)
    if stuck:
        total["error: still waiting at the deadline"] += stuck
    return total
