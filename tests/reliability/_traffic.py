"""HTTP traffic for the reliability tests: one request, a burst, and a steady load that records
every outcome with its start time.

Why our own client rather than ``examples.load.run_load``: the fault tests must judge each
response on its own (a 503 must carry a JSON error and no traceback; a request started after
the backend came back must succeed), and ``run_load`` only returns totals; and the soak tests
want a fresh connection per request, so that every lost request is the server's fault and not
the keep-alive race (a connection the server closes as the client reuses it).

Everything here runs in the pytest process, on threads it starts and joins with a bound; it
talks to the server under test over loopback HTTP only, one fresh connection per request (so a
worker that dies cannot strand a kept-alive connection and blur the figures).
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from typing import Any

#: Outcome kinds, in the order the reports print them.
KINDS = ("ok", "wrong", "clean_503", "bad_5xx", "other_status", "timeout", "conn_error")


@dataclass(frozen=True)
class Outcome:
    """One request and what came back. ``started`` is ``time.monotonic()`` at send time."""

    payload: str
    started: float
    elapsed: float
    status: int | None  # None when no HTTP response came back
    body: bytes
    error: str  # "" when a response came back; else the exception, as text

    @property
    def kind(self) -> str:
        """Classify: ok (200, right result), wrong (200, any other result), clean_503 (503 with a
        JSON ``error`` and no traceback), bad_5xx (any other 5xx, or a 503 with a traceback or
        without the JSON error), other_status, timeout, conn_error."""
        if self.status is None:
            return "timeout" if self.error.startswith("timeout") else "conn_error"
        if self.status == 200:
            return "ok" if _answers(self.body, self.payload) else "wrong"
        if self.status == 503 and b"Traceback" not in self.body and _has_json_error(self.body):
            return "clean_503"
        if 500 <= self.status <= 599:
            return "bad_5xx"
        return "other_status"


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _answers(body: bytes, payload: str) -> bool:
    """Whether ``body`` is the app's answer to ``payload``: echoed, and reversed as the result."""
    doc = _json(body)
    return (
        isinstance(doc, dict)
        and doc.get("payload") == payload
        and doc.get("result") == payload[::-1]
    )


def _has_json_error(body: bytes) -> bool:
    doc = _json(body)
    return isinstance(doc, dict) and isinstance(doc.get("error"), str)


def fetch(base_url: str, path: str, *, timeout: float) -> tuple[int | None, bytes, str]:
    """GET ``path`` on a fresh connection; return (status, body, error text)."""
    parts = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        return response.status, response.read(), ""
    except TimeoutError as exc:
        return None, b"", f"timeout: {exc!r}"
    except (OSError, http.client.HTTPException) as exc:
        return None, b"", f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()


def job(base_url: str, payload: str, *, timeout: float) -> Outcome:
    """One ``GET /job?payload=...`` request, timed and classified."""
    path = "/job?" + urllib.parse.urlencode({"payload": payload})
    started = time.monotonic()
    status, body, error = fetch(base_url, path, timeout=timeout)
    return Outcome(payload, started, time.monotonic() - started, status, body, error)


def burst(base_url: str, count: int, *, timeout: float, prefix: str = "burst") -> list[Outcome]:
    """Send ``count`` job requests at once (threads released together by a barrier) and return
    their outcomes. A request not back within ``timeout`` + 40 s (30 of them for the barrier)
    is reported as stuck (an Outcome with error ``"stuck"``) rather than joined forever."""
    barrier = threading.Barrier(count)
    results: list[Outcome | None] = [None] * count

    def one(index: int) -> None:
        barrier.wait(timeout=30.0)
        results[index] = job(base_url, f"{prefix}-{index}", timeout=timeout)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout + 10.0 + 30.0
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [
        r if r is not None else Outcome(f"{prefix}-{i}", 0.0, 0.0, None, b"", "stuck")
        for i, r in enumerate(results)
    ]


class Load:
    """``concurrency`` threads sending job requests back to back, each on a fresh connection,
    until ``stop()`` or until ``limit`` requests have been sent; every outcome is kept.

    Threads: ``start()`` and ``stop()`` run on the test's thread; the senders on their own
    daemon threads. Payloads are unique (``prefix-thread-n``), so a response that carries another
    request's result is counted as wrong, not as ok. ``keep_ok=False`` keeps only the failures
    (a long run's successes would fill memory); ``counts()`` covers every request either way.
    """

    def __init__(
        self,
        base_url: str,
        *,
        concurrency: int,
        limit: int,
        timeout: float,
        prefix: str,
        keep_ok: bool = True,
    ) -> None:
        self._keep_ok = keep_ok
        self._base_url = base_url
        self._timeout = timeout
        self._prefix = prefix
        self._stopping = threading.Event()
        # Guards _sent, the count of requests handed out against the limit.
        self._sent_lock = threading.Lock()
        self._sent = 0
        self._limit = limit
        self._outcomes: list[Outcome] = []  # appended under _done; read whole after the joins
        self._counts: Counter[str] = Counter()  # completed requests by kind, and "all"
        # Guards _outcomes and _counts, and wakes wait_done() as requests complete.
        self._done = threading.Condition()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), name=f"load-{i}", daemon=True)
            for i in range(concurrency)
        ]

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def _take_ticket(self) -> bool:
        with self._sent_lock:
            if self._sent >= self._limit:
                return False
            self._sent += 1
            return True

    def _run(self, index: int) -> None:
        for n in itertools.count():
            if self._stopping.is_set() or not self._take_ticket():
                return
            outcome = job(self._base_url, f"{self._prefix}-{index}-{n}", timeout=self._timeout)
            with self._done:
                if self._keep_ok or outcome.kind != "ok":
                    self._outcomes.append(outcome)
                self._counts.update(("all", outcome.kind))
                self._done.notify_all()

    def wait_done(self, count: int, *, timeout: float) -> bool:
        """Block until ``count`` requests have completed; False if ``timeout`` passes first."""
        with self._done:
            return self._done.wait_for(lambda: self._counts["all"] >= count, timeout)

    def counts(self) -> dict[str, int]:
        """Completed requests per kind (KINDS order, zeros included)."""
        with self._done:
            return {kind: self._counts[kind] for kind in KINDS}

    def stop(self) -> list[Outcome]:
        """Stop sending, wait (bounded) for requests in flight, return every outcome sorted by
        start time. Raises AssertionError naming the threads still stuck after the bound."""
        self._stopping.set()
        deadline = time.monotonic() + self._timeout + 30.0
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in self._threads if t.is_alive()]
        assert not stuck, f"{len(stuck)} load threads still blocked: {stuck}"
        return sorted(self._outcomes, key=lambda o: o.started)


def tally(outcomes: list[Outcome]) -> dict[str, int]:
    """Counts per kind, every kind present (zeros included), in KINDS order."""
    counts = Counter(o.kind for o in outcomes)
    return {kind: counts.get(kind, 0) for kind in KINDS}


def stats_by_pid(base_url: str, pids: list[int], *, timeout: float = 10.0) -> dict[int, Any]:
    """``GET /stats`` until every pid in ``pids`` has answered (bounded at 50 tries per pid);
    return the JSON documents by pid. Which worker answers is up to the kernel's accept, hence
    the loop."""
    found: dict[int, Any] = {}
    for _ in range(50 * len(pids)):
        status, body, error = fetch(base_url, "/stats", timeout=timeout)
        assert status == 200, f"/stats answered {status} {error} {body[:200]!r}"
        doc = json.loads(body)
        found[int(doc["pid"])] = doc
        if set(pids) <= set(found):
            return found
    raise AssertionError(f"/stats never answered from {sorted(set(pids) - set(found))}")
