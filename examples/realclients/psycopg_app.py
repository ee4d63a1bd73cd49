"""psycopg 3 + PostgreSQL, written as a user writes it: a module-global connection, cursors.

    DATABASE_URL=postgresql://app:app-password@127.0.0.1:PORT/app \\
    SAFECLIENTS_EXAMPLE_POLICY=pooled python -m server examples.realclients.psycopg_app:application

``SAFECLIENTS_EXAMPLE_POLICY`` picks how the global ``db`` is made: ``unsafe`` (one
``psycopg.connect`` at import: psycopg 3 connections may be shared by threads, but not across a
fork, "libpq connections shouldn't be used by a forked process", and the master imports the app
before forking), or a factory decorated with ``@safeclients.per_thread``, ``@safeclients.locked``
or ``@safeclients.pooled(size=4)``, or (``pooled_check``) ``@safeclients.pooled(size=4,
check=alive)``. The request code is the driver's ordinary code, no ``checkout()``; the schema
check at import touches the client.
"""

from __future__ import annotations

from typing import Any

import psycopg

import safeclients
from examples.realclients._wsgi import POOL_SIZE, env_url, make_application, policy_from_env

POLICY = policy_from_env()


def connect() -> psycopg.Connection[Any]:
    return psycopg.connect(
        env_url("DATABASE_URL"),
        connect_timeout=5,
        options="-c statement_timeout=5000",
        autocommit=True,
    )


def alive(conn: psycopg.Connection[Any]) -> bool:
    """The health check: ``SELECT 1`` (raises ``psycopg.Error`` when the connection is dead)."""
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        cur.fetchone()
    return True


if POLICY == "unsafe":
    db = connect()
elif POLICY == "per_thread":

    @safeclients.per_thread
    def db() -> psycopg.Connection[Any]:
        return connect()
elif POLICY == "locked":

    @safeclients.locked
    def db() -> psycopg.Connection[Any]:
        return connect()
elif POLICY == "pooled":

    @safeclients.pooled(size=POOL_SIZE)
    def db() -> psycopg.Connection[Any]:
        return connect()
else:  # pooled_check

    @safeclients.pooled(size=POOL_SIZE, check=alive)
    def db() -> psycopg.Connection[Any]:
        return connect()


# A schema check at import, as apps do (this opens the first connection, in the master).
with db.cursor() as cur:
    cur.execute("SELECT COUNT(*) FROM items")
    cur.fetchone()


def item(n: int, token: str) -> str:
    with db.cursor() as cur:
        cur.execute("SELECT val FROM items WHERE id = %s", (n,))
        row = cur.fetchone()
    return str(row[0]) if row else ""


application = make_application(
    item, client=db, policy=POLICY, backend_errors=(psycopg.Error, OSError)
)
