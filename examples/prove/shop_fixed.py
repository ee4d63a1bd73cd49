"""The same app, fixed: the connection is a ``safeclients.per_thread`` proxy (one connection
per thread, made in the thread that uses it, never shared across a fork)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable

import safeclients
from examples.prove.shop import DB_PATH


@safeclients.per_thread
def db() -> sqlite3.Connection:
    return sqlite3.connect(DB_PATH, timeout=10)


def count_orders() -> int:
    row = db.execute("select count(*) from orders").fetchone()
    return int(row[0])


def app(environ: dict[str, object], start_response: Callable[..., object]) -> Iterable[bytes]:
    body = (
        f"{count_orders()} orders\n".encode() if environ.get("PATH_INFO") == "/orders" else b"ok\n"
    )
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
