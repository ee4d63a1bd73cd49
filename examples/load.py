"""A bounded load driver that checks every answer: ``GET /job?payload=X`` must return ``X[::-1]``.

    python -m examples.load http://127.0.0.1:8000 --requests 2000 --concurrency 32

``concurrency`` threads share one counter of ``total`` requests; each thread keeps one
keep-alive ``http.client`` connection (reopened after any error) and a per-request timeout.
Every payload is unique (``<run>-<n>-<random>``), so a result swapped between two requests is
caught, not just a garbled one. Outcomes:

* ok: 200 and ``result == payload[::-1]`` and ``payload`` echoed;
* wrong: 2xx/4xx whose JSON is not that (someone else's result, or unparsable);
* http_5xx: 500-599;
* conn_errors: refused / reset / closed connection;
* timeouts: no answer within ``timeout`` seconds.

A progress bar goes to stderr while it runs (``progress=True``), one summary line at the end.
Runs in the caller's process; the worker threads are daemons joined with a bound.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

JOIN_SLACK = 30.0  # seconds beyond the worst case before we stop waiting for a thread


@dataclass(frozen=True)
class LoadResult:
    """What a run saw; ``failures`` is everything but ok."""

    total: int
    ok: int
    wrong: int
    http_5xx: int
    conn_errors: int
    timeouts: int
    elapsed: float
    examples: tuple[str, ...] = field(default=())

    @property
    def failures(self) -> int:
        return self.wrong + self.http_5xx + self.conn_errors + self.timeouts

    @property
    def rps(self) -> float:
        return self.total / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> str:
        return (
            f"{self.total} requests in {self.elapsed:.1f} s ({self.rps:.0f} req/s): "
            f"ok {self.ok}, wrong {self.wrong}, 5xx {self.http_5xx}, "
            f"conn errors {self.conn_errors}, timeouts {self.timeouts}"
        )


class _Tally:
    """Counters shared by the load threads."""

    MAX_EXAMPLES = 5

    def __init__(self, total: int) -> None:
        # Guards every attribute below.
        self.lock = threading.Lock()
        self.remaining = total
        self.done = 0
        self.counts = {"ok": 0, "wrong": 0, "http_5xx": 0, "conn_errors": 0, "timeouts": 0}
        self.examples: list[str] = []

    def claim(self) -> int | None:
        """The next request number, or None when the budget is spent."""
        with self.lock:
            if self.remaining <= 0:
                return None
            self.remaining -= 1
            return self.remaining

    def record(self, outcome: str, detail: str = "") -> None:
        with self.lock:
            self.counts[outcome] += 1
            self.done += 1
            if detail and len(self.examples) < self.MAX_EXAMPLES:
                self.examples.append(f"{outcome}: {detail}")


def _classify(status: int, body: bytes, payload: str) -> tuple[str, str]:
    if 500 <= status <= 599:
        return "http_5xx", f"{status} {body[:200]!r}"
    try:
        data = json.loads(body)
    except ValueError:
        return "wrong", f"{status} unparsable {body[:200]!r}"
    if status == 200 and data.get("payload") == payload and data.get("result") == payload[::-1]:
        return "ok", ""
    return "wrong", f"{status} sent {payload!r} got {data!r}"[:300]


# A kept-alive connection the server closed while idle (uWSGI's http-socket closes after each
# response without saying so): the request never reached the app, so it is sent again, once, on
# a new connection, as urllib3 does.
STALE_CONNECTION = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


def _exchange(conn: http.client.HTTPConnection, url: str) -> tuple[http.client.HTTPResponse, bytes]:
    conn.request("GET", url)
    response = conn.getresponse()
    return response, response.read()


def _worker(host: str, port: int, path: str, timeout: float, run_id: str, tally: _Tally) -> None:
    conn: http.client.HTTPConnection | None = None
    try:
        while (n := tally.claim()) is not None:
            payload = f"{run_id}-{n}-{uuid.uuid4().hex[:8]}"
            url = f"{path}/job?payload={quote(payload)}"
            reused = conn is not None
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
            try:
                try:
                    response, body = _exchange(conn, url)
                except STALE_CONNECTION:
                    if not reused:
                        raise
                    conn.close()
                    conn = http.client.HTTPConnection(host, port, timeout=timeout)
                    response, body = _exchange(conn, url)
            except TimeoutError as exc:
                tally.record("timeouts", f"{type(exc).__name__}")
                conn.close()
                conn = None
                continue
            except (OSError, http.client.HTTPException) as exc:
                tally.record("conn_errors", f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = None
                continue
            outcome, detail = _classify(response.status, body, payload)
            tally.record(outcome, detail)
            if response.will_close:
                conn.close()
                conn = None
    finally:
        if conn is not None:
            conn.close()


STALL_NOTE_AFTER = 1.0  # seconds without an answer before the bar says what it is waiting for


def _progress(tally: _Tally, total: int, timeout: float, finished: threading.Event) -> None:
    """Draw the bar on stderr (its own thread). When no answer came for a while, it says how many
    requests are still out and how long they may take, so a stall reads as what it is (requests
    hanging in the app until their timeout) rather than as a hung driver."""
    width = 30
    last_done, last_change = -1, time.monotonic()
    shown = 0
    while True:
        stop = finished.wait(0.2)  # a UI refresh tick, not synchronisation
        with tally.lock:
            done, bad = tally.done, tally.done - tally.counts["ok"]
            out = total - tally.remaining - tally.done  # claimed, not yet answered
        now = time.monotonic()
        if done != last_done:
            last_done, last_change = done, now
        filled = width * done // max(total, 1)
        line = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} failures {bad}"
        if not stop and out and now - last_change >= STALL_NOTE_AFTER:
            line += (
                f"; waiting {now - last_change:.0f} s on {out} slow request"
                f"{'s' if out != 1 else ''} (each gives up after {timeout:g} s)"
            )
        sys.stderr.write(f"\r{line:<{shown}}")  # pad over a longer previous line
        shown = len(line)
        sys.stderr.flush()
        if stop:
            sys.stderr.write("\n")
            return


def run_load(
    base_url: str, *, total: int, concurrency: int, timeout: float = 10.0, progress: bool = False
) -> LoadResult:
    """Fire ``total`` checked requests at ``base_url`` from ``concurrency`` threads."""
    if total < 1 or concurrency < 1 or timeout <= 0:
        raise ValueError(
            f"need total >= 1, concurrency >= 1, timeout > 0; got {total}, {concurrency}, {timeout}"
        )
    url = urlsplit(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    path = url.path.rstrip("/")
    run_id = f"{os.getpid()}{uuid.uuid4().hex[:6]}"
    tally = _Tally(total)
    threads = [
        threading.Thread(
            target=_worker,
            args=(host, port, path, timeout, run_id, tally),
            name=f"load-{i}",
            daemon=True,
        )
        for i in range(min(concurrency, total))
    ]
    finished = threading.Event()
    bar = (
        threading.Thread(target=_progress, args=(tally, total, timeout, finished), daemon=True)
        if progress
        else None
    )
    started = time.monotonic()
    if bar is not None:
        bar.start()
    for thread in threads:
        thread.start()
    # Worst case: every request of one thread times out (plus a reconnect each).
    deadline = started + timeout * 2 * (total // len(threads) + 1) + JOIN_SLACK
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    elapsed = time.monotonic() - started
    finished.set()
    if bar is not None:
        bar.join(5.0)
    with tally.lock:
        counts = dict(tally.counts)
        examples = tuple(tally.examples)
        unanswered = total - tally.done
    return LoadResult(
        total=total,
        ok=counts["ok"],
        wrong=counts["wrong"],
        http_5xx=counts["http_5xx"],
        conn_errors=counts["conn_errors"],
        timeouts=counts["timeouts"] + unanswered,
        elapsed=elapsed,
        examples=examples,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="base URL of the app, e.g. http://127.0.0.1:8000")
    parser.add_argument("--requests", "-n", type=int, default=2000)
    parser.add_argument("--concurrency", "-c", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    result = run_load(
        args.url,
        total=args.requests,
        concurrency=args.concurrency,
        timeout=args.timeout,
        progress=not args.quiet,
    )
    print(result.summary())
    for example in result.examples:
        print(f"  e.g. {example}")
    return 0 if result.failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
