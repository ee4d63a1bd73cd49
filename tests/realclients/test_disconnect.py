"""The profiles' disconnect judgements (``safeclients._disconnect``) on real servers, both ways.

For each client: a statement error on a live connection keeps that connection and the work of
its open transaction (sqlite3 OperationalError for SQL errors, PyMySQL and mysqlclient 1054
and 1205, a
psycopg2 / psycopg 3 statement timeout, smtplib 550), and a connection the server killed is
discarded and replaced by the next use. Each proxy uses the default ``discard_on``; the
servers are examples.support's launchers (MariaDB, PostgreSQL) and aiosmtpd, each on a free
loopback port, stopped in ``finally``.
"""

from __future__ import annotations

import ftplib
import importlib
import smtplib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import safeclients
from examples.support.backends import Backend, MariaDB, PostgreSQL
from examples.support.backends._base import admin_cursor
from tests.realclients import drivers
from tests.realclients.conftest import FtpServer, SmtpServer, table_ids
from tests.realclients.drivers import MYSQL, POSTGRES, query

pytestmark = pytest.mark.integration

POLICIES = ["per_thread", "locked", "pooled", "per_process"]


def _proxy(kind: str, factory: Any) -> Any:
    if kind == "pooled":
        return safeclients.pooled(factory, size=2, timeout=10)
    return getattr(safeclients, kind)(factory)


def _discarded(proxy: Any) -> int:
    return safeclients.stats(proxy).discarded


# -- sqlite3 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", POLICIES)
def test_sqlite3_sql_error_keeps_the_transaction(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "keep.db"
    sqlite3.connect(path).execute("CREATE TABLE t (v INT)").connection.close()
    proxy = _proxy(kind, lambda: sqlite3.connect(path, check_same_thread=False))
    try:
        with proxy:  # one connection for the block, every call through the proxy
            proxy.execute("INSERT INTO t VALUES (1)")
            with pytest.raises(sqlite3.OperationalError, match="no such table"):
                proxy.execute("SELECT * FROM missing")
            proxy.execute("INSERT INTO t VALUES (2)")
            proxy.commit()
        assert _discarded(proxy) == 0, f"{kind}: a live sqlite3 connection was discarded"
        check = sqlite3.connect(path)
        assert check.execute("SELECT v FROM t ORDER BY v").fetchall() == [(1,), (2,)]
        check.close()
    finally:
        safeclients.dispose(proxy)


def test_sqlite3_memory_database_survives_an_sql_error() -> None:
    proxy = safeclients.per_thread(lambda: sqlite3.connect(":memory:"))
    try:
        proxy.execute("CREATE TABLE t (v INT)")
        with pytest.raises(sqlite3.OperationalError):
            proxy.execute("INSERT INTO t VALUES (1, 2)")
        assert proxy.execute("SELECT count(*) FROM t").fetchone() == (0,)
        assert _discarded(proxy) == 0
    finally:
        safeclients.dispose(proxy)


# -- PyMySQL + MariaDB --------------------------------------------------------------------------


MYSQL_DRIVERS = MYSQL


def _pymysql(server: Backend) -> Any:
    return drivers.pymysql(server.params)


@pytest.mark.parametrize("driver", sorted(MYSQL_DRIVERS))
@pytest.mark.parametrize("kind", POLICIES)
def test_mysql_unknown_column_keeps_the_transaction(
    mariadb: MariaDB, mysql_table: str, kind: str, driver: str
) -> None:
    proxy = _proxy(kind, MYSQL_DRIVERS[driver](mariadb.params))
    try:
        with safeclients.checkout(proxy):  # PyMySQL's own __exit__ would close it
            cur = proxy.cursor()
            cur.execute(f"INSERT INTO {mysql_table} VALUES (1)")
            with pytest.raises(proxy.OperationalError) as raised:
                cur.execute(f"SELECT nope FROM {mysql_table}")
            assert raised.value.args[0] == 1054
            cur.execute(f"INSERT INTO {mysql_table} VALUES (2)")
            cur.close()
            proxy.commit()
        assert _discarded(proxy) == 0, f"{driver} {kind}: a live connection was discarded"
        assert table_ids(mariadb, mysql_table) == [1, 2]
    finally:
        safeclients.dispose(proxy)


@pytest.mark.parametrize("driver", sorted(MYSQL_DRIVERS))
def test_mysql_lock_wait_timeout_keeps_the_connection(
    mariadb: MariaDB, mysql_table: str, driver: str
) -> None:
    proxy = safeclients.pooled(MYSQL_DRIVERS[driver](mariadb.params), size=1, timeout=10)
    blocker = _pymysql(mariadb)()
    try:
        with blocker.cursor() as cur:
            cur.execute(f"INSERT INTO {mysql_table} VALUES (7)")  # holds the row's lock
        with safeclients.checkout(proxy):  # PyMySQL's own __exit__ would close it
            cur = proxy.cursor()
            cur.execute("SET SESSION innodb_lock_wait_timeout = 1")
            cur.execute(f"INSERT INTO {mysql_table} VALUES (1)")
            thread_id = proxy.thread_id()
            with pytest.raises(proxy.OperationalError) as raised:
                cur.execute(f"INSERT INTO {mysql_table} VALUES (7)")
            assert raised.value.args[0] == 1205
            cur.execute(f"INSERT INTO {mysql_table} VALUES (2)")  # the statement, not the
            cur.close()  # transaction, was rolled back (innodb_rollback_on_timeout off)
            proxy.commit()
        blocker.rollback()
        assert _discarded(proxy) == 0
        assert proxy.thread_id() == thread_id, "the live connection was replaced"
        assert table_ids(mariadb, mysql_table) == [1, 2]
    finally:
        blocker.close()
        safeclients.dispose(proxy)


def _kill_mysql(server: MariaDB, thread_id: int) -> None:
    with admin_cursor(server.admin()) as cur:
        cur.execute(f"KILL CONNECTION {int(thread_id)}")


@pytest.mark.parametrize("driver", sorted(MYSQL_DRIVERS))
@pytest.mark.parametrize("kind", POLICIES)
def test_mysql_killed_connection_is_discarded(mariadb: MariaDB, kind: str, driver: str) -> None:
    proxy = _proxy(kind, MYSQL_DRIVERS[driver](mariadb.params))
    try:
        first = query(proxy, "SELECT CONNECTION_ID()")[0][0]
        _kill_mysql(mariadb, first)
        with pytest.raises(proxy.OperationalError):
            query(proxy, "SELECT 1")
        assert _discarded(proxy) == 1, f"{driver} {kind}: the dead connection was kept"
        assert query(proxy, "SELECT CONNECTION_ID()")[0][0] != first
    finally:
        safeclients.dispose(proxy)


# -- psycopg2 and psycopg 3 + PostgreSQL --------------------------------------------------------


DRIVERS = POSTGRES


@pytest.mark.parametrize("driver", sorted(DRIVERS))
@pytest.mark.parametrize("kind", POLICIES)
def test_pg_statement_timeout_keeps_the_transaction(
    postgresql: PostgreSQL, pg_table: str, driver: str, kind: str
) -> None:
    """A statement timeout is an OperationalError (QueryCanceled) on a live connection: the
    app rolls back to its savepoint and commits what came before."""
    proxy = _proxy(kind, DRIVERS[driver](postgresql.params))
    try:
        with safeclients.checkout(proxy):  # psycopg 3's own __exit__ would close it
            cur = proxy.cursor()
            cur.execute(f"INSERT INTO {pg_table} VALUES (1)")
            cur.execute("SAVEPOINT before_slow")
            cur.execute("SET LOCAL statement_timeout = 50")
            with pytest.raises(proxy.OperationalError, match="statement timeout"):
                cur.execute("SELECT pg_sleep(5)")
            cur.execute("ROLLBACK TO SAVEPOINT before_slow")
            cur.execute(f"INSERT INTO {pg_table} VALUES (2)")
            cur.close()
            proxy.commit()
        assert _discarded(proxy) == 0, f"{driver} {kind}: a live connection was discarded"
        assert table_ids(postgresql, pg_table) == [1, 2]
    finally:
        safeclients.dispose(proxy)


def _backend_pid(proxy: Any) -> int:
    with safeclients.checkout(proxy) as conn:
        cur = conn.cursor()
        cur.execute("SELECT pg_backend_pid()")
        (pid,) = cur.fetchone()
        cur.close()
        conn.rollback()
        return int(pid)


@pytest.mark.parametrize("driver", sorted(DRIVERS))
@pytest.mark.parametrize("kind", POLICIES)
def test_pg_terminated_connection_is_discarded(
    postgresql: PostgreSQL, driver: str, kind: str
) -> None:
    proxy = _proxy(kind, DRIVERS[driver](postgresql.params))
    try:
        first = _backend_pid(proxy)
        with admin_cursor(postgresql.admin()) as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (first,))
        with pytest.raises(importlib.import_module(driver).OperationalError):
            _backend_pid(proxy)
        assert _discarded(proxy) == 1, f"{driver} {kind}: the dead connection was kept"
        assert _backend_pid(proxy) != first
    finally:
        safeclients.dispose(proxy)


# -- smtplib + aiosmtpd -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", POLICIES)
def test_smtp_refused_recipient_keeps_the_session(smtp_server: SmtpServer, kind: str) -> None:
    handler = smtp_server.handler
    proxy = _proxy(kind, smtp_server.factory)
    try:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            proxy.sendmail("a@example.com", ["nobody@example.com"], "Subject: x\r\n\r\nbody")
        proxy.sendmail("a@example.com", ["b@example.com"], "Subject: y\r\n\r\nbody")
        assert _discarded(proxy) == 0, f"{kind}: a session was discarded for a 550"
        assert safeclients.stats(proxy).created == 1
        assert handler.delivered == [["b@example.com"]]
    finally:
        safeclients.dispose(proxy)


@pytest.mark.parametrize("kind", POLICIES)
def test_smtp_closed_session_is_discarded(smtp_server: SmtpServer, kind: str) -> None:
    handler = smtp_server.handler
    proxy = _proxy(kind, smtp_server.factory)
    try:
        with pytest.raises(smtplib.SMTPException):
            proxy.sendmail("a@example.com", ["shutdown@example.com"], "Subject: x\r\n\r\nbody")
        assert _discarded(proxy) == 1, f"{kind}: a closed session was kept"
        proxy.sendmail("a@example.com", ["b@example.com"], "Subject: y\r\n\r\nbody")
        assert handler.delivered == [["b@example.com"]]
    finally:
        safeclients.dispose(proxy)


# -- ftplib + pyftpdlib -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", POLICIES)
def test_ftp_refused_command_keeps_the_session(ftp_server: FtpServer, kind: str) -> None:
    proxy = _proxy(kind, ftp_server.factory)
    try:
        proxy.cwd("/")
        with pytest.raises(ftplib.error_perm, match="550"):
            proxy.cwd("no-such-directory")
        assert proxy.pwd() == "/"
        assert _discarded(proxy) == 0, f"{kind}: a session was discarded for a 550"
        assert safeclients.stats(proxy).created == 1
    finally:
        safeclients.dispose(proxy)


@pytest.mark.parametrize("kind", POLICIES)
def test_ftp_session_the_server_closed_is_discarded(ftp_server: FtpServer, kind: str) -> None:
    proxy = _proxy(kind, ftp_server.factory)
    try:
        proxy.pwd()
        ftp_server.close_next.set()  # the next command gets 421 and a closed connection
        with pytest.raises(ftplib.error_temp, match="421"):
            proxy.pwd()
        assert _discarded(proxy) == 1, f"{kind}: a closed session was kept"
        assert proxy.pwd() == "/"
    finally:
        safeclients.dispose(proxy)
