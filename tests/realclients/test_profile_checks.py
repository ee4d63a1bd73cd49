"""The shipped profiles' health checks (``safeclients._profile_table``) on real servers.

Each check must tell the truth: pass on a live connection whatever its transaction state (a
psycopg 3 connection inside its default transaction, a psycopg2 or psycopg 3 connection in a
failed transaction), fail on one the server killed or timed out (smtplib: a ``421`` answer to
NOOP followed by the server closing the session, as Postfix does on an idle timeout), so the
policies replace it before the next request fails. ``check_interval=0``: every reuse is vetted.
"""

from __future__ import annotations

from typing import Any

import pytest

import safeclients
from examples.support.backends import PostgreSQL
from examples.support.backends._base import admin_cursor
from tests.realclients.conftest import FtpServer, SmtpServer, table_ids
from tests.realclients.drivers import POSTGRES, query

pytestmark = pytest.mark.integration

LONG_LIVED = ["per_thread", "locked", "per_process"]


def _proxy(kind: str, factory: Any, **health: Any) -> Any:
    return getattr(safeclients, kind)(factory, check_interval=0, **health)


# -- psycopg 3 and psycopg2: a live connection in any transaction state passes -------------------


DRIVERS = POSTGRES


@pytest.mark.parametrize("driver", sorted(DRIVERS))
@pytest.mark.parametrize("kind", LONG_LIVED)
def test_pg_check_inside_the_default_transaction_keeps_it(
    postgresql: PostgreSQL, pg_table: str, driver: str, kind: str
) -> None:
    proxy = _proxy(kind, DRIVERS[driver](postgresql.params))
    try:
        query(proxy, f"INSERT INTO {pg_table} VALUES (1)")  # opens the transaction
        query(proxy, f"INSERT INTO {pg_table} VALUES (2)")  # vetted: INTRANS
        proxy.commit()
        assert safeclients.stats(proxy).created == 1, f"{driver} {kind}: a live one was retired"
        assert table_ids(postgresql, pg_table) == [1, 2]
    finally:
        safeclients.dispose(proxy)


@pytest.mark.parametrize("driver", sorted(DRIVERS))
@pytest.mark.parametrize("kind", LONG_LIVED)
def test_pg_check_in_a_failed_transaction_keeps_the_connection(
    postgresql: PostgreSQL, pg_table: str, driver: str, kind: str
) -> None:
    proxy = _proxy(kind, DRIVERS[driver](postgresql.params))
    try:
        pid = query(proxy, "SELECT pg_backend_pid()")[0][0]
        with pytest.raises(proxy.ProgrammingError):  # UndefinedTable: the transaction fails
            query(proxy, "SELECT * FROM no_such_table")
        proxy.rollback()  # vetted first, in INERROR: the connection is alive
        assert query(proxy, "SELECT pg_backend_pid()")[0][0] == pid
        assert safeclients.stats(proxy).created == 1
    finally:
        safeclients.dispose(proxy)


@pytest.mark.parametrize("driver", sorted(DRIVERS))
@pytest.mark.parametrize("kind", LONG_LIVED)
def test_pg_check_replaces_a_terminated_connection(
    postgresql: PostgreSQL, driver: str, kind: str
) -> None:
    proxy = _proxy(kind, DRIVERS[driver](postgresql.params))
    try:
        pid = query(proxy, "SELECT pg_backend_pid()")[0][0]
        proxy.rollback()
        with admin_cursor(postgresql.admin()) as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
        # No error reaches the caller: the check finds it dead and a new one answers.
        assert query(proxy, "SELECT pg_backend_pid()")[0][0] != pid
        assert safeclients.stats(proxy).created == 2
    finally:
        safeclients.dispose(proxy)


# -- smtplib: a session the server timed out (421) or lost is replaced ---------------------------


def _send(proxy: Any, to: str) -> None:
    proxy.sendmail("a@example.com", [to], f"Subject: {to}\r\n\r\nbody")


@pytest.mark.parametrize("kind", LONG_LIVED)
def test_smtp_check_replaces_a_timed_out_session(smtp_server: SmtpServer, kind: str) -> None:
    handler = smtp_server.handler
    proxy = _proxy(kind, smtp_server.factory)
    try:
        _send(proxy, "one@example.com")
        handler.time_out.set()
        _send(proxy, "two@example.com")  # the check's NOOP gets 421: a new session sends it
        assert handler.delivered == [["one@example.com"], ["two@example.com"]]
        assert safeclients.stats(proxy).created == 2
    finally:
        safeclients.dispose(proxy)


@pytest.mark.parametrize("kind", LONG_LIVED)
def test_smtp_check_replaces_a_session_of_a_restarted_server(
    smtp_server: SmtpServer, kind: str
) -> None:
    handler = smtp_server.handler
    proxy = _proxy(kind, smtp_server.factory)
    try:
        _send(proxy, "one@example.com")
        smtp_server.restart()  # every session is cut
        _send(proxy, "two@example.com")
        assert handler.delivered == [["one@example.com"], ["two@example.com"]]
        assert safeclients.stats(proxy).created == 2
    finally:
        safeclients.dispose(proxy)


# -- ftplib: a session the server timed out (421) or lost is replaced ----------------------------


@pytest.mark.parametrize("kind", LONG_LIVED)
def test_ftp_check_replaces_a_timed_out_session(ftp_server: FtpServer, kind: str) -> None:
    proxy = _proxy(kind, ftp_server.factory)
    try:
        assert proxy.pwd() == "/"
        ftp_server.close_next.set()  # the check's NOOP gets 421, the session is closed
        assert proxy.pwd() == "/"
        assert safeclients.stats(proxy).created == 2
    finally:
        safeclients.dispose(proxy)


@pytest.mark.parametrize("kind", LONG_LIVED)
def test_ftp_check_replaces_a_session_of_a_restarted_server(
    ftp_server: FtpServer, kind: str
) -> None:
    proxy = _proxy(kind, ftp_server.factory)
    try:
        assert proxy.pwd() == "/"
        ftp_server.restart()  # every session is cut
        assert proxy.pwd() == "/"
        assert safeclients.stats(proxy).created == 2
    finally:
        safeclients.dispose(proxy)
