"""mysqlclient (MySQLdb) + MariaDB, written as a user writes it: a module-global connection,
DB-API cursors.

    DATABASE_URL=mysql://app:app-password@127.0.0.1:PORT/app \\
    SAFECLIENTS_EXAMPLE_POLICY=pooled \\
    python -m server examples.realclients.mysqlclient_app:application

``SAFECLIENTS_EXAMPLE_POLICY`` picks how the global ``db`` is made: ``unsafe`` (one
``MySQLdb.connect`` at import, shared by every thread and, after the fork, every worker:
mysqlclient says "threadsafety = 1", threads may not share connections), or a factory decorated
with
``@safeclients.per_thread``, ``@safeclients.locked``, ``@safeclients.pooled(size=4)``, or
(``pooled_check``) ``@safeclients.pooled(size=4, check=alive)``. The request code is the
driver's ordinary code, no ``checkout()``; the schema check at import touches the client, as
real apps do.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import MySQLdb  # type: ignore[import-untyped]

import safeclients
from examples.realclients._wsgi import POOL_SIZE, env_url, make_application, policy_from_env

POLICY = policy_from_env()


def connect() -> MySQLdb.connections.Connection:
    url = urlsplit(env_url("DATABASE_URL"))
    conn = MySQLdb.connect(
        host=url.hostname or "127.0.0.1",
        port=url.port or 3306,
        user=unquote(url.username or ""),
        password=unquote(url.password or ""),
        database=url.path.lstrip("/"),
        connect_timeout=5,
        read_timeout=5,
        write_timeout=5,
    )
    conn.autocommit(True)
    return conn


def alive(conn: MySQLdb.connections.Connection) -> bool:
    """The health check: ``mysql_ping`` (raises ``MySQLdb.OperationalError`` when dead)."""
    conn.ping()
    return True


if POLICY == "unsafe":
    db = connect()
elif POLICY == "per_thread":

    @safeclients.per_thread
    def db() -> MySQLdb.connections.Connection:
        return connect()
elif POLICY == "locked":

    @safeclients.locked
    def db() -> MySQLdb.connections.Connection:
        return connect()
elif POLICY == "pooled":

    @safeclients.pooled(size=POOL_SIZE)
    def db() -> MySQLdb.connections.Connection:
        return connect()
else:  # pooled_check

    @safeclients.pooled(size=POOL_SIZE, check=alive)
    def db() -> MySQLdb.connections.Connection:
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
    item, client=db, policy=POLICY, backend_errors=(MySQLdb.Error, OSError)
)
