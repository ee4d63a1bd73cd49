"""Real database and broker servers for the real-client examples and tests.

Each launcher starts one Debian-packaged server on a free loopback port below 32768, with its
data in a temporary directory, waits for a real client round trip, and stops it by PID; nothing
global is touched (no systemd, no ``/var/lib``). Every launcher offers the same surface:

* ``start()`` / ``stop()`` / ``close()`` (also a context manager), ``pid``, ``port``, ``host``;
* ``params`` (keyword arguments for the driver's ``connect``) and ``url``;
* ``connection_count()``: client connections the server holds now, seen server-side, the
  launcher's own admin connection excluded;
* ``kill_all_connections()``: close every client connection server-side, as a restart, a
  failover or an idle timeout does; returns how many.

    with MariaDB() as db:
        conn = pymysql.connect(**db.params)
        db.connection_count(); db.kill_all_connections()

A missing server binary raises :class:`BackendMissingError` whose message says to run
``scripts/bootstrap.sh``. Imports no pytest; the drivers (PyMySQL, psycopg2, pika, redis-py:
the ``mysql``, ``postgres``, ``rabbitmq``, ``redis`` extras) are imported when first used.
"""

from __future__ import annotations

from ._base import Backend
from .data import ITEM_COUNT, item_value
from .errors import BackendAdminError, BackendError, BackendMissingError, BackendStartError
from .mariadb import MariaDB
from .postgres import PostgreSQL
from .rabbitmq import RabbitMQ
from .redis import Redis

#: Launcher per backend name, the names the example apps and tests use.
BACKENDS: dict[str, type[Backend]] = {
    "mariadb": MariaDB,
    "postgresql": PostgreSQL,
    "rabbitmq": RabbitMQ,
    "redis": Redis,
}

__all__ = [
    "BACKENDS",
    "ITEM_COUNT",
    "Backend",
    "BackendAdminError",
    "BackendError",
    "BackendMissingError",
    "BackendStartError",
    "MariaDB",
    "PostgreSQL",
    "RabbitMQ",
    "Redis",
    "item_value",
]
