"""A bounded load driver that checks every answer of the real-client apps' ``/item`` route.

Request ``i`` asks ``GET /item?n=N&token=T`` with ``N = i % ITEM_COUNT + 1`` and a unique
token; the answer is *ok* when it is a 200 that names this request's ``n`` and ``token`` and
whose ``echo`` is what the backend must have returned for it (row ``N``'s value for the
databases, the token for Redis and RabbitMQ); *wrong* when it is a 2xx/4xx that is anything else
(another request's row, unparsable); an *error* when it is a 5xx, a refused or reset
connection, or no answer within ``timeout``. One new HTTP connection per request (uWSGI's
http-socket closes after each response anyway).

The run is bounded: ``total`` requests from ``concurrency`` threads, each request with a
timeout, the threads joined with a deadline, and it stops early once ``stop_after`` requests
have failed (an unsafe app may hang every request thread; there is no point in timing out the
rest one by one). Runs in the caller's process.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from examples.support.backends.data import ITEM_COUNT, item_value

JOIN_SLACK = 30.0
MAX_EXAMPLES = 4


@dataclass
class Tally:
    """What one run saw. ``failures`` is wrong + errors; ``sent`` may be < total (early stop)."""

    total: int
    ok: int = 0
    wrong: int = 0
    errors: int = 0
    examples: list[str] = field(default_factory=list)
    ok_tokens: list[str] = field(default_factory=list)  # the tokens of the ok answers

    @property
    def failures(self) -> int:
        return self.wrong + self.errors

    @property
    def sent(self) -> int:
        return self.ok + self.wrong + self.errors

    def summary(self) -> str:
        return (
            f"{self.sent}/{self.total} sent: ok {self.ok}, wrong {self.wrong}, errors {self.errors}"
        )


def expected_echo(expect: str, n: int, token: str) -> str:
    """What the backend must echo for this request: ``row`` -> row n's value, else the token."""
    return item_value(n) if expect == "row" else token


def classify(status: int, body: bytes, n: int, token: str, expect: str) -> tuple[str, str]:
    """("ok" | "wrong" | "errors", detail) for one answer; sans-IO, tested with a table."""
    if 500 <= status <= 599:
        return "errors", f"{status} {body[:160]!r}"
    try:
        data = json.loads(body)
    except ValueError:
        return "wrong", f"{status} unparsable {body[:160]!r}"
    if (
        status == 200
        and isinstance(data, dict)
        and data.get("n") == n
        and data.get("token") == token
        and data.get("echo") == expected_echo(expect, n, token)
    ):
        return "ok", ""
    return "wrong", f"{status} asked n={n} token={token} got {data!r}"[:300]


def run_checked_load(
    base_url: str,
    *,
    total: int,
    concurrency: int,
    expect: str,
    timeout: float = 5.0,
    stop_after: int | None = None,
) -> Tally:
    """Send ``total`` checked requests from ``concurrency`` threads; see the module docstring."""
    if total < 1 or concurrency < 1 or timeout <= 0 or expect not in ("row", "token"):
        raise ValueError(
            f"need total >= 1, concurrency >= 1, timeout > 0, expect row|token; "
            f"got {total}, {concurrency}, {timeout}, {expect!r}"
        )
    url = urlsplit(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    run_id = uuid.uuid4().hex[:8]
    tally = Tally(total)
    lock = threading.Lock()  # guards tally and next_i
    next_i = [0]

    def claim() -> int | None:
        with lock:
            if next_i[0] >= total or (stop_after is not None and tally.failures >= stop_after):
                return None
            next_i[0] += 1
            return next_i[0] - 1

    def record(outcome: str, detail: str, token: str) -> None:
        with lock:
            setattr(tally, outcome, getattr(tally, outcome) + 1)
            if outcome == "ok":
                tally.ok_tokens.append(token)
            if detail and len(tally.examples) < MAX_EXAMPLES:
                tally.examples.append(f"{outcome}: {detail}")

    def worker() -> None:
        while (i := claim()) is not None:
            n = i % ITEM_COUNT + 1
            token = f"{run_id}-{i}"
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
            try:
                conn.request("GET", f"/item?n={n}&token={quote(token)}")
                response = conn.getresponse()
                outcome, detail = classify(response.status, response.read(), n, token, expect)
            except (OSError, http.client.HTTPException) as exc:
                outcome, detail = "errors", f"{type(exc).__name__}: {exc}"
            finally:
                conn.close()
            record(outcome, detail, token)

    threads = [
        threading.Thread(target=worker, name=f"realclients-load-{k}", daemon=True)
        for k in range(min(concurrency, total))
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout * (total // len(threads) + 1) + JOIN_SLACK
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    with lock:
        return Tally(
            total,
            tally.ok,
            tally.wrong,
            tally.errors,
            list(tally.examples),
            list(tally.ok_tokens),
        )
