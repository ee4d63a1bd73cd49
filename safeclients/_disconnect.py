"""Which errors mean the connection is dead, per client: the profiles' ``disconnect`` judgements.

"Broken" is a judgement about the connection, never about the exception's class alone: a DB-API
driver raises ``OperationalError`` both for a lost connection and for a lock wait timeout on a
connection that is perfectly alive (PyMySQL for every unmapped server error >= 1000, sqlite3 for
any SQL error), and discarding the live one drops its open transaction. SQLAlchemy's dialects
ask ``is_disconnect(e, connection, cursor)``, by error code, connection state and message; each
function here is that question for one client, asked with the exception and the instance the
call ran on (``obj``: None when the caller has none).

Sources, learnt from (never copied): SQLAlchemy ``dialects/mysql/base.py`` and ``pymysql.py``
``is_disconnect`` (the MySQL client error codes below), ``dialects/postgresql/psycopg2.py``
(``connection.closed``, libpq's messages), ``dialects/postgresql/psycopg.py``
(``connection.closed or connection.broken``); CPython ``Lib/smtplib.py`` and ``Lib/ftplib.py``
(the 421 reply: "Service not available, closing transmission channel", RFC 5321 4.2.3 and
RFC 959 4.2); each client's own source as cited beside its function.

Nothing here imports an optional package: an exception of a driver means the driver is
imported, so its module is read from ``sys.modules``.

Which thread runs what: the judgement runs in the request thread whose call raised, or where a
derived object's use ends; it only reads the exception and the instance's state, never sends.
"""

from __future__ import annotations

import sys
from typing import Any

# MySQL/MariaDB error codes that mean the session is gone (SQLAlchemy's mysql dialect uses the
# same set): 1927 ER_CONNECTION_KILLED, 2006 CR_SERVER_GONE_ERROR, 2013 CR_SERVER_LOST, 2014
# CR_COMMANDS_OUT_OF_SYNC (the stream is desynchronised), 2045 CR_CONN_UNKNOW_PROTOCOL, 2055
# CR_SERVER_LOST_EXTENDED, 4031 ER_CLIENT_INTERACTION_TIMEOUT (the server closed an idle
# session); and 1053 ER_SERVER_SHUTDOWN (the server is going away under the statement).
MYSQL_DISCONNECT_CODES = frozenset({1053, 1927, 2006, 2013, 2014, 2045, 2055, 4031})

# libpq and psycopg2's own messages for a connection that is gone (libpq fe-misc.c,
# fe-secure.c; psycopg2 connection.h, cursor.h), read on the first line of the message only.
PG_DISCONNECT_MESSAGES = (
    "terminating connection",
    "closed the connection",
    "connection not open",
    "could not receive data from server",
    "could not send data to server",
    "connection already closed",
    "cursor already closed",
    "connection has been closed unexpectedly",
    "server closed the connection unexpectedly",
    "SSL SYSCALL error",
)

# SQLSTATE of a dead session: class 08 "Connection Exception", 57P01 admin_shutdown, 57P02
# crash_shutdown, 57P03 cannot_connect_now (PostgreSQL Appendix A).
PG_DISCONNECT_SQLSTATES = ("08", "57P01", "57P02", "57P03")


def _module(name: str) -> Any:
    return sys.modules.get(name)


def _code(exc: BaseException) -> object:
    """The error code of a MySQL driver's exception: ``args[0]`` (PyMySQL, mysqlclient)."""
    args = exc.args
    if args and isinstance(args[0], BaseException):  # a wrapped error (SQLAlchemy's shape)
        args = args[0].args
    return args[0] if args else None


def never(exc: BaseException, obj: Any) -> bool:
    """A client that reconnects by itself (redis-py, pymemcache): no error makes it dead."""
    return False


def pymysql(exc: BaseException, conn: Any) -> bool:
    """PyMySQL: dead when the connection says so (``open`` is ``_sock is not None``: PyMySQL
    drops the socket itself on a lost connection, ``_force_close``), or by code (2006 gone
    away, 2013 lost, ...), or ``InterfaceError(0, '')`` (a command on a closed connection,
    ``_execute_command``), or ``Error("Already closed")`` (``ping``/``close``). A server error
    such as 1054 unknown column, 1205 lock wait timeout or 1213 deadlock leaves it alive, with
    its transaction."""
    if conn is not None and getattr(conn, "open", True) is False:
        return True
    err = _module("pymysql.err")
    if err is None or not isinstance(exc, err.Error):
        return isinstance(exc, OSError)  # a socket error outside the driver's wrapping
    if _code(exc) in MYSQL_DISCONNECT_CODES:
        return True
    if isinstance(exc, err.InterfaceError) and _code(exc) == 0:
        return True
    text = str(exc).lower()
    return "already closed" in text or "connection was killed" in text


def mysqlclient(exc: BaseException, conn: Any) -> bool:
    """mysqlclient (MySQLdb): by code, as PyMySQL (``_mysql.c`` raises ``OperationalError``
    with the client library's code, 2006/2013 for a lost server); ``InterfaceError`` is only
    raised for a connection that is not open (``check_connection``); ``open`` is 0 after
    ``close()``. A server error (1054, 1205, 1213) leaves it alive."""
    if conn is not None and getattr(conn, "open", 1) == 0:
        return True
    exceptions = _module("MySQLdb._exceptions") or _module("_mysql_exceptions")
    if exceptions is None or not isinstance(exc, exceptions.Error):
        return isinstance(exc, OSError)
    if isinstance(exc, exceptions.InterfaceError):
        return True
    return _code(exc) in MYSQL_DISCONNECT_CODES


def _pg_message(exc: BaseException) -> bool:
    first = str(exc).partition("\n")[0]
    return any(message in first for message in PG_DISCONNECT_MESSAGES)


def psycopg2(exc: BaseException, conn: Any) -> bool:
    """psycopg2: dead when ``conn.closed`` is nonzero ("closed or broken": psycopg2 marks a
    connection it lost 2), else by libpq's message. ``OperationalError`` alone says nothing:
    a deadlock (40P01), a statement timeout (57014) and a lock not available (55P03) are all
    ``OperationalError`` subclasses on a live connection."""
    module = _module("psycopg2")
    if module is None or not isinstance(exc, module.Error):
        return isinstance(exc, OSError)
    if conn is not None and getattr(conn, "closed", False):
        return True
    return _pg_message(exc)


def psycopg(exc: BaseException, conn: Any) -> bool:
    """psycopg 3: dead when ``conn.closed`` or ``conn.broken`` ("True if the connection was
    interrupted"); without the connection, by SQLSTATE class 08/57P0x or libpq's message."""
    module = _module("psycopg")
    if module is None or not isinstance(exc, module.Error):
        return isinstance(exc, OSError)
    if conn is not None:
        return bool(getattr(conn, "closed", False) or getattr(conn, "broken", False))
    sqlstate = getattr(exc, "sqlstate", None) or ""
    return sqlstate.startswith(PG_DISCONNECT_SQLSTATES) or _pg_message(exc)


def sqlite3(exc: BaseException, conn: Any) -> bool:
    """sqlite3: a local file has no connection to lose; only a closed one is dead
    (``ProgrammingError: Cannot operate on a closed database.``). ``OperationalError`` is what
    sqlite3 raises for SQL errors ("no such table", "database is locked") on a live
    connection, whose transaction (or ``:memory:`` database) must be kept."""
    module = _module("sqlite3")
    if module is None or not isinstance(exc, module.ProgrammingError):
        return False
    return "closed database" in str(exc)


def smtplib(exc: BaseException, smtp: Any) -> bool:
    """smtplib: dead when the session has no socket (smtplib's own ``close()`` clears it: it
    does so on a 421 reply to MAIL or RCPT, and on ``SMTPServerDisconnected``), on
    ``SMTPServerDisconnected``, on a 421 reply ("closing transmission channel", RFC 5321),
    and on a socket error. ``SMTPException`` derives from ``OSError``, so a refused recipient
    (550) or sender would look like a socket error by class: it leaves the session alive."""
    if smtp is not None and getattr(smtp, "sock", True) is None:
        return True
    module = _module("smtplib")
    if module is None or not isinstance(exc, module.SMTPException):
        return isinstance(exc, OSError)
    if isinstance(exc, module.SMTPServerDisconnected):
        return True
    if isinstance(exc, module.SMTPResponseException):
        return bool(exc.smtp_code == 421)
    if isinstance(exc, module.SMTPRecipientsRefused):
        return any(code == 421 for code, _ in exc.recipients.values())
    return False


def ftplib(exc: BaseException, ftp: Any) -> bool:
    """ftplib: dead when the control connection is gone (``sock`` None after ``close()``), on
    ``EOFError`` (``getline``: the server closed it), a 421 reply (``error_temp``, "Service not
    available, closing control connection", RFC 959), ``error_proto`` (an unreadable reply:
    the stream is out of step), or a socket error. A 5xx reply (``error_perm``: no such file,
    permission denied) leaves the session alive."""
    if ftp is not None and getattr(ftp, "sock", True) is None:
        return True
    if isinstance(exc, (EOFError, OSError)):
        return True
    module = _module("ftplib")
    if module is None:
        return False
    if isinstance(exc, module.error_proto):
        return True
    return isinstance(exc, module.error_temp) and str(exc)[:3] == "421"


def asyncpg(exc: BaseException, conn: Any) -> bool:
    """asyncpg's ``Connection``: dead when it says so (``is_closed()``: asyncpg marks a
    connection whose transport was lost, ``protocol.pyx`` ``connection_lost``), or by SQLSTATE
    (``ConnectionDoesNotExistError`` 08003 and the rest of class 08, ``AdminShutdownError``
    57P01, ...), or a socket error. ``InterfaceError`` "cannot perform operation: another
    operation is in progress" (``connection.py`` ``_check_open``/``_check_listeners`` callers)
    is a *misuse* on a live connection: two tasks used it at once; it is kept, and so are a
    statement error, a ``QueryCanceledError`` (57014) and a client-side ``TimeoutError``
    (asyncpg cancels the query on the server and the connection stays usable)."""
    if conn is not None:
        is_closed = getattr(conn, "is_closed", None)
        if callable(is_closed) and is_closed() is True:
            return True
    exceptions = _module("asyncpg.exceptions")
    if exceptions is None:
        return isinstance(exc, OSError)
    if isinstance(exc, exceptions.PostgresError):
        return str(getattr(exc, "sqlstate", "") or "").startswith(PG_DISCONNECT_SQLSTATES)
    if isinstance(exc, exceptions.InterfaceError):
        return "connection is closed" in str(exc)
    # A timeout (TimeoutError is an OSError) leaves it alive: asyncpg cancels the query.
    return isinstance(exc, OSError) and not isinstance(exc, TimeoutError)


def asyncpg_pool(exc: BaseException, pool: Any) -> bool:
    """asyncpg's ``Pool``: dead only when it is closing or closed (``is_closing()``). A query
    whose connection the server terminated fails its caller, but the pool is alive: it
    reconnects a closed connection at its next acquire (``pool.py``
    ``PoolConnectionHolder.acquire``: ``if self._con is None or self._con.is_closed()``), and
    its other connections serve the loop's other tasks meanwhile; retiring the pool for one of
    its connections would close it under them ("pool is closing")."""
    if pool is not None:
        is_closing = getattr(pool, "is_closing", None)
        if callable(is_closing) and is_closing() is True:
            return True
    return False


__all__ = [
    "MYSQL_DISCONNECT_CODES",
    "PG_DISCONNECT_MESSAGES",
    "PG_DISCONNECT_SQLSTATES",
    "never",
    "pymysql",
    "mysqlclient",
    "psycopg2",
    "psycopg",
    "sqlite3",
    "smtplib",
    "ftplib",
    "asyncpg",
    "asyncpg_pool",
]
