"""A small WSGI app written the usual way: a module-global database connection, opened at
import, shared by every request (the trap ``safeclients prove`` and the pytest plugin catch).

``GET /orders`` counts the orders; ``GET /health`` touches no client. The database is SQLite
(a file in the temporary directory, or ``SHOP_DB``), so the example needs no server.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterable

DB_PATH = os.environ.get("SHOP_DB", os.path.join(tempfile.gettempdir(), "safeclients-shop.db"))

db = sqlite3.connect(DB_PATH, check_same_thread=False, timeout=10)
db.execute("create table if not exists orders (id integer primary key, item text)")
db.commit()


def count_orders() -> int:
    row = db.execute("select count(*) from orders").fetchone()
    return int(row[0])


def app(environ: dict[str, object], start_response: Callable[..., object]) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/orders":
        body = f"{count_orders()} orders\n".encode()
    else:
        body = b"ok\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
