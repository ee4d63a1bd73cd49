"""Connection probes: describe the connection a client holds, reading state, sending nothing.

A probe takes a live client and returns ``"host:port"`` (or another short description) when it
holds an open connection, None when it holds none. It reads attributes and socket state only
(``fileno()``, ``getpeername()``, sqlite's ``total_changes``, a driver's ``closed`` flag): it
never sends a byte, so the audit can run it on an app's globals without talking to a server.
The client profiles (``safeclients.profiles``) name one probe per client type.

Process and thread: runs wherever the audit runs (a CLI process or a test), never in a server.
Across a fork: nothing to say; probes hold no state.
"""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Callable
from typing import Any

__all__ = [
    "Probe",
    "peer",
    "attr_socket",
    "sqlite",
    "gearman",
    "pymysql",
    "mysqlclient",
    "psycopg2",
    "psycopg",
    "pika_connection",
    "pika_channel",
    "redis",
    "paramiko",
]

#: A probe looks at a client and describes its open connection ("127.0.0.1:4730"), or returns
#: None when it holds none. It must not send anything and must not raise.
Probe = Callable[[Any], "str | None"]


def peer(sock: object) -> str | None:
    """``"host:port"`` of a socket's peer, ``"open, not connected"``, or None when closed."""
    if not isinstance(sock, socket.socket) or sock.fileno() < 0:
        return None
    try:
        address = sock.getpeername()
    except OSError:
        return f"fd {sock.fileno()} open, not connected"
    if isinstance(address, tuple):
        return f"{address[0]}:{address[1]}"
    return str(address) or f"fd {sock.fileno()} open"


def attr_socket(attr: str) -> Probe:
    """A probe for a client that keeps its socket in attribute ``attr`` (None when closed)."""

    def probe(obj: Any) -> str | None:
        return peer(getattr(obj, attr, None))

    return probe


def sqlite(conn: Any) -> str | None:
    try:
        _ = conn.total_changes  # raises ProgrammingError once closed
    except sqlite3.ProgrammingError as exc:
        if "closed" in str(exc):
            return None
        return "sqlite database handle (created in another thread)"
    return "sqlite database handle"


def gearman(client: Any) -> str | None:
    connected = [
        f"{c.gearman_host}:{c.gearman_port}"
        for c in getattr(client, "connection_list", ())
        if getattr(c, "connected", False)
    ]
    return ", ".join(connected) or None


def pymysql(conn: Any) -> str | None:
    # pymysql/connections.py: `open` is "self._sock is not None".
    if getattr(conn, "_sock", None) is None:
        return None
    return f"{getattr(conn, 'host', '?')}:{getattr(conn, 'port', '?')}"


def mysqlclient(conn: Any) -> str | None:
    # MySQLdb/_mysql.c: the connection's `open` member is true until close().
    if not getattr(conn, "open", False):
        return None
    return f"{getattr(conn, 'host', '?')}:{getattr(conn, 'port', '?')}"


def psycopg2(conn: Any) -> str | None:
    # psycopg2 docs, connection.closed: "0 if the connection is open, nonzero if it is closed
    # or broken"; connection.info (2.8+) reads libpq's PQhost/PQport, no round trip.
    if getattr(conn, "closed", 1):
        return None
    info = getattr(conn, "info", None)
    return f"{getattr(info, 'host', '?')}:{getattr(info, 'port', '?')}"


def psycopg(conn: Any) -> str | None:
    # psycopg 3 docs, Connection.closed: "True if the connection is closed"; ConnectionInfo's
    # host and port read the libpq connection, no round trip.
    if getattr(conn, "closed", True):
        return None
    info = getattr(conn, "info", None)
    return f"{getattr(info, 'host', '?')}:{getattr(info, 'port', '?')}"


def pika_connection(conn: Any) -> str | None:
    # pika BlockingConnection.is_open: "Returns a boolean reporting the current connection
    # state" (reads the state, sends nothing). The broker's address is not public.
    return "AMQP connection open" if getattr(conn, "is_open", False) else None


def pika_channel(channel: Any) -> str | None:
    if not getattr(channel, "is_open", False):
        return None
    return f"AMQP channel {getattr(channel, 'channel_number', '?')} open"


def _redis_pool(client: Any, connected_attr: str) -> str | None:
    # redis-py: a client's ConnectionPool keeps its Connection objects in
    # _available_connections/_in_use_connections; each holds `connected_attr` while connected.
    pool = getattr(client, "connection_pool", None)
    held = [*getattr(pool, "_available_connections", ()), *getattr(pool, "_in_use_connections", ())]
    if not any(getattr(c, connected_attr, None) is not None for c in held):
        return None
    kwargs = getattr(pool, "connection_kwargs", {})
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"


def redis(client: Any) -> str | None:
    # A sync Connection holds `_sock` while connected.
    return _redis_pool(client, "_sock")


def redis_asyncio(client: Any) -> str | None:
    # An asyncio Connection (redis/asyncio/connection.py) holds its StreamWriter, `_writer`,
    # while connected (even one whose loop has closed: what an import-time warm-up leaves).
    return _redis_pool(client, "_writer")


def paramiko(client: Any) -> str | None:
    # paramiko SSHClient.get_transport() returns the Transport or None; Transport.is_active()
    # reads its state and getpeername() its socket's peer.
    transport = client.get_transport() if hasattr(client, "get_transport") else None
    if transport is None or not transport.is_active():
        return None
    host, port = transport.getpeername()[:2]
    return f"{host}:{port}"
