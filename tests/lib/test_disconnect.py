"""safeclients._disconnect: "broken" means the connection is dead, judged per client.

Table-driven over the drivers' own exception classes (no sockets: the real servers' side is
tests/realclients/test_disconnect.py), then through a policy: the default ``discard_on`` asks
the profile's judgement with the instance the call ran on, a user's ``discard_on`` still takes
the exception only.
"""

from __future__ import annotations

import ftplib
import smtplib
import sqlite3
from types import SimpleNamespace
from typing import Any

import pytest

import safeclients
from safeclients import _disconnect, profiles
from tests.lib.fakes import FakeClient

# The drivers' own exception classes (no server): the minimum-versions venv has none of them.
psycopg = pytest.importorskip("psycopg")
psycopg2 = pytest.importorskip("psycopg2")
pymysql = pytest.importorskip("pymysql")

LIVE_PYMYSQL = SimpleNamespace(open=True)
CLOSED_PYMYSQL = SimpleNamespace(open=False)

CASES: list[tuple[str, Any, BaseException, Any, bool]] = [
    # (what, judgement, exception, instance, dead?)
    (
        "pymysql 2013 lost",
        _disconnect.pymysql,
        pymysql.err.OperationalError(2013, "Lost"),
        LIVE_PYMYSQL,
        True,
    ),
    (
        "pymysql 2006 gone away",
        _disconnect.pymysql,
        pymysql.err.OperationalError(2006, "gone"),
        None,
        True,
    ),
    (
        "pymysql 4031 idle timeout",
        _disconnect.pymysql,
        pymysql.err.OperationalError(4031, "inactivity"),
        LIVE_PYMYSQL,
        True,
    ),
    (
        "pymysql closed socket",
        _disconnect.pymysql,
        pymysql.err.InterfaceError(0, ""),
        LIVE_PYMYSQL,
        True,
    ),
    (
        "pymysql already closed",
        _disconnect.pymysql,
        pymysql.err.Error("Already closed"),
        None,
        True,
    ),
    (
        "pymysql open false",
        _disconnect.pymysql,
        pymysql.err.OperationalError(1205, "lock"),
        CLOSED_PYMYSQL,
        True,
    ),
    (
        "pymysql 1054 unknown column",
        _disconnect.pymysql,
        pymysql.err.OperationalError(1054, "Unknown column"),
        LIVE_PYMYSQL,
        False,
    ),
    (
        "pymysql 1205 lock wait",
        _disconnect.pymysql,
        pymysql.err.OperationalError(1205, "Lock wait timeout"),
        LIVE_PYMYSQL,
        False,
    ),
    (
        "pymysql 1213 deadlock",
        _disconnect.pymysql,
        pymysql.err.OperationalError(1213, "Deadlock found"),
        LIVE_PYMYSQL,
        False,
    ),
    (
        "pymysql 1062 duplicate",
        _disconnect.pymysql,
        pymysql.err.IntegrityError(1062, "Duplicate"),
        LIVE_PYMYSQL,
        False,
    ),
    ("pymysql socket error", _disconnect.pymysql, ConnectionResetError(), LIVE_PYMYSQL, True),
    (
        "pymysql bad argument",
        _disconnect.pymysql,
        TypeError("not all arguments"),
        LIVE_PYMYSQL,
        False,
    ),
    (
        "psycopg2 closed flag",
        _disconnect.psycopg2,
        psycopg2.OperationalError("anything"),
        SimpleNamespace(closed=2),
        True,
    ),
    (
        "psycopg2 server closed",
        _disconnect.psycopg2,
        psycopg2.OperationalError("server closed the connection unexpectedly\n\tThis..."),
        SimpleNamespace(closed=0),
        True,
    ),
    (
        "psycopg2 terminating",
        _disconnect.psycopg2,
        psycopg2.OperationalError("terminating connection due to administrator command"),
        None,
        True,
    ),
    (
        "psycopg2 deadlock",
        _disconnect.psycopg2,
        psycopg2.extensions.TransactionRollbackError("deadlock detected"),
        SimpleNamespace(closed=0),
        False,
    ),
    (
        "psycopg2 statement timeout",
        _disconnect.psycopg2,
        psycopg2.extensions.QueryCanceledError("canceling statement due to statement timeout"),
        SimpleNamespace(closed=0),
        False,
    ),
    (
        "psycopg2 message in a quoted value",
        _disconnect.psycopg2,
        psycopg2.OperationalError('invalid input "closed the connection"'),
        SimpleNamespace(closed=0),
        True,
    ),
    (
        "psycopg closed",
        _disconnect.psycopg,
        psycopg.OperationalError("x"),
        SimpleNamespace(closed=True, broken=False),
        True,
    ),
    (
        "psycopg broken",
        _disconnect.psycopg,
        psycopg.OperationalError("x"),
        SimpleNamespace(closed=False, broken=True),
        True,
    ),
    (
        "psycopg live after lock timeout",
        _disconnect.psycopg,
        psycopg.errors.LockNotAvailable("lock"),
        SimpleNamespace(closed=False, broken=False),
        False,
    ),
    (
        "psycopg without the connection",
        _disconnect.psycopg,
        psycopg.errors.AdminShutdown("terminating"),
        None,
        True,
    ),
    (
        "sqlite3 SQL error",
        _disconnect.sqlite3,
        sqlite3.OperationalError("no such table: t"),
        None,
        False,
    ),
    (
        "sqlite3 locked",
        _disconnect.sqlite3,
        sqlite3.OperationalError("database is locked"),
        None,
        False,
    ),
    (
        "sqlite3 closed",
        _disconnect.sqlite3,
        sqlite3.ProgrammingError("Cannot operate on a closed database."),
        None,
        True,
    ),
    (
        "smtp 550 recipient",
        _disconnect.smtplib,
        smtplib.SMTPRecipientsRefused({"a@b": (550, b"no such user")}),
        SimpleNamespace(sock=1),
        False,
    ),
    (
        "smtp 550 data",
        _disconnect.smtplib,
        smtplib.SMTPDataError(550, b"rejected"),
        SimpleNamespace(sock=1),
        False,
    ),
    (
        "smtp 535 auth",
        _disconnect.smtplib,
        smtplib.SMTPAuthenticationError(535, b"bad"),
        SimpleNamespace(sock=1),
        False,
    ),
    (
        "smtp 421 reply",
        _disconnect.smtplib,
        smtplib.SMTPResponseException(421, b"closing"),
        SimpleNamespace(sock=1),
        True,
    ),
    (
        "smtp disconnected",
        _disconnect.smtplib,
        smtplib.SMTPServerDisconnected("gone"),
        SimpleNamespace(sock=1),
        True,
    ),
    (
        "smtp closed by smtplib",
        _disconnect.smtplib,
        smtplib.SMTPSenderRefused(421, b"x", "a"),
        SimpleNamespace(sock=None),
        True,
    ),
    ("smtp socket timeout", _disconnect.smtplib, TimeoutError(), SimpleNamespace(sock=1), True),
    (
        "ftp 550",
        _disconnect.ftplib,
        ftplib.error_perm("550 No such file"),
        SimpleNamespace(sock=1),
        False,
    ),
    (
        "ftp 421",
        _disconnect.ftplib,
        ftplib.error_temp("421 Timeout"),
        SimpleNamespace(sock=1),
        True,
    ),
    ("ftp 450", _disconnect.ftplib, ftplib.error_temp("450 busy"), SimpleNamespace(sock=1), False),
    ("ftp EOF", _disconnect.ftplib, EOFError(), SimpleNamespace(sock=1), True),
    ("ftp closed", _disconnect.ftplib, ftplib.error_perm("530"), SimpleNamespace(sock=None), True),
    ("redis never", _disconnect.never, ConnectionError(), None, False),
]


@pytest.mark.parametrize(
    ("judgement", "exc", "obj", "dead"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_judgement(judgement: Any, exc: BaseException, obj: Any, dead: bool) -> None:
    assert judgement(exc, obj) is dead, f"{exc!r} on {obj!r} should be judged dead={dead}"


def test_every_shipped_profile_for_a_class_raising_operational_error_judges_by_state() -> None:
    for name in (
        "pymysql.connections.Connection",
        "psycopg2.extensions.connection",
        "psycopg.Connection",
        "sqlite3.Connection",
        "smtplib.SMTP",
        "ftplib.FTP",
        "MySQLdb.connections.Connection",
    ):
        profile = profiles.registered_as(name)
        assert profile is not None and profile.disconnect is not None, name


def test_profile_refuses_a_disconnect_that_is_not_callable() -> None:
    with pytest.raises(TypeError, match="disconnect must be a callable"):
        profiles.Profile(qualname="a.B", reason="", suggest="pooled", sources=(), disconnect="yes")  # type: ignore[arg-type]


# -- through a policy -------------------------------------------------------------------------


class StatementError(Exception):
    """Named like a DB-API error, so the generic default would discard on it by class."""


StatementError.__name__ = "OperationalError"


class Session(FakeClient):
    """A client whose connection state says whether it is dead (as PyMySQL's ``open``)."""

    def __init__(self) -> None:
        super().__init__()
        self.open = True
        self.rows: list[int] = []

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """As sqlite3's: a transaction block, not a close."""

    def insert(self, value: int) -> None:
        self.rows.append(value)

    def bad_statement(self) -> None:
        raise StatementError("(1054, \"Unknown column 'nope'\")")

    def lose(self) -> None:
        self.open = False
        raise StatementError("(2013, 'Lost connection')")

    def cursor(self) -> Cursor:
        return Cursor(self)

    def commit(self) -> None:
        self.rows.clear()


class Cursor:
    """Bound to its session (``connection``), so the proxy wraps it as a derived object."""

    def __init__(self, connection: Session) -> None:
        self.connection = connection

    def close(self) -> None:
        """A cursor's close: nothing to free."""

    def execute(self, lost: bool) -> None:
        if lost:
            self.connection.lose()
        self.connection.bad_statement()


def judge(exc: BaseException, obj: Any) -> bool:
    return obj is not None and not obj.open


POLICIES = ["per_thread", "locked", "pooled", "per_process"]


def _proxy(kind: str, **options: Any) -> Any:
    if kind == "pooled":
        return safeclients.pooled(Session, size=1, **options)
    return getattr(safeclients, kind)(Session, **options)


@pytest.mark.usefixtures("session_profile", "call_path")
@pytest.mark.parametrize("kind", POLICIES)
def test_live_connection_after_a_statement_error_keeps_its_work(kind: str) -> None:
    proxy = _proxy(kind)
    with proxy:
        proxy.insert(1)
        with pytest.raises(StatementError):
            proxy.bad_statement()
        proxy.insert(2)
        kept = proxy.whoami()[0]
    with pytest.raises(StatementError):
        proxy.bad_statement()  # a plain call too
    assert proxy.whoami()[0] == kept, f"{kind}: the live session was replaced"
    assert safeclients.stats(proxy).discarded == 0
    safeclients.dispose(proxy)


@pytest.mark.usefixtures("session_profile", "call_path")
@pytest.mark.parametrize("kind", POLICIES)
def test_dead_connection_is_discarded_by_its_state(kind: str) -> None:
    proxy = _proxy(kind)
    first = proxy.whoami()[0]
    with pytest.raises(StatementError):
        proxy.lose()
    assert proxy.whoami()[0] != first, f"{kind}: the dead session was handed out again"
    assert safeclients.stats(proxy).discarded == 1
    safeclients.dispose(proxy)


@pytest.mark.usefixtures("session_profile")
@pytest.mark.parametrize("kind", POLICIES)
def test_a_derived_object_s_error_is_judged_on_its_instance(kind: str) -> None:
    proxy = _proxy(kind)
    cursor = proxy.cursor()
    with pytest.raises(StatementError):
        cursor.execute(False)
    del cursor
    assert safeclients.stats(proxy).discarded == 0, f"{kind}: a live session was discarded"
    cursor = proxy.cursor()
    with pytest.raises(StatementError):
        cursor.execute(True)
    del cursor
    assert safeclients.stats(proxy).discarded == 1, f"{kind}: a dead session was kept"
    safeclients.dispose(proxy)


@pytest.mark.usefixtures("session_profile", "call_path")
def test_user_discard_on_predicate_takes_the_exception_only() -> None:
    seen: list[BaseException] = []

    def discard_on(exc: BaseException) -> bool:
        seen.append(exc)
        return True

    proxy = safeclients.per_thread(Session, discard_on=discard_on)
    first = proxy.whoami()[0]
    with pytest.raises(StatementError):
        proxy.bad_statement()
    assert len(seen) == 1 and isinstance(seen[0], StatementError)
    assert proxy.whoami()[0] != first, "the user's discard_on overrides the profile's judgement"
    safeclients.dispose(proxy)


# -- asyncpg: a misuse is not a disconnect (issue 24) ------------------------------------------


class _AsyncpgState:
    """An asyncpg Connection's state as the judgement reads it (``is_closed()``)."""

    def __init__(self, closed: bool) -> None:
        self.closed = closed

    def is_closed(self) -> bool:
        return self.closed


def _asyncpg_cases() -> list[Any]:
    asyncpg = pytest.importorskip("asyncpg")
    exc = asyncpg.exceptions
    live, closed = _AsyncpgState(False), _AsyncpgState(True)
    in_progress = "cannot perform operation: another operation is in progress"
    return [
        pytest.param(exc.InterfaceError(in_progress), live, False, id="misuse, live"),
        pytest.param(exc.InterfaceError("connection is closed"), closed, True, id="closed"),
        pytest.param(exc.InterfaceError("connection is closed"), None, True, id="closed text"),
        pytest.param(exc.ConnectionDoesNotExistError("lost"), None, True, id="08003"),
        pytest.param(exc.AdminShutdownError("terminating"), None, True, id="57P01"),
        pytest.param(exc.UndefinedColumnError("no column"), live, False, id="statement error"),
        pytest.param(exc.QueryCanceledError("canceled"), live, False, id="57014"),
        pytest.param(TimeoutError(), live, False, id="client timeout"),
        pytest.param(ConnectionResetError(), None, True, id="socket error"),
        pytest.param(exc.UndefinedColumnError("no column"), closed, True, id="state wins"),
    ]


@pytest.mark.parametrize(("exc", "conn", "dead"), _asyncpg_cases())
def test_asyncpg_judgement(exc: BaseException, conn: Any, dead: bool) -> None:
    assert _disconnect.asyncpg(exc, conn) is dead


def test_asyncpg_profile_keeps_a_connection_two_tasks_misused() -> None:
    asyncpg = pytest.importorskip("asyncpg")
    profile = profiles.profile_for(asyncpg.Connection)
    assert profile is not None and profile.disconnect is _disconnect.asyncpg
    assert profile.suggest == "pooled" and "create_pool" in profile.reason  # a task, a connection
    assert profile.one_task, "per_loop refuses it to a task while another holds it"


class _AsyncpgPoolState:
    """An asyncpg Pool's state as the judgement reads it (``is_closing()``)."""

    def __init__(self, closing: bool) -> None:
        self.closing = closing

    def is_closing(self) -> bool:
        return self.closing


def _asyncpg_pool_cases() -> list[Any]:
    asyncpg = pytest.importorskip("asyncpg")
    exc = asyncpg.exceptions
    open_, closing = _AsyncpgPoolState(False), _AsyncpgPoolState(True)
    return [
        # One of its connections was terminated: the pool reconnects it at the next acquire.
        pytest.param(exc.ConnectionDoesNotExistError("lost"), open_, False, id="08003, open"),
        pytest.param(exc.AdminShutdownError("terminating"), open_, False, id="57P01, open"),
        pytest.param(ConnectionResetError(), open_, False, id="socket error, open"),
        pytest.param(exc.InterfaceError("pool is closing"), closing, True, id="closing"),
        pytest.param(exc.UndefinedColumnError("no column"), closing, True, id="state wins"),
        pytest.param(exc.ConnectionDoesNotExistError("lost"), None, False, id="no pool"),
    ]


@pytest.mark.parametrize(("exc", "pool", "dead"), _asyncpg_pool_cases())
def test_asyncpg_pool_judgement(exc: BaseException, pool: Any, dead: bool) -> None:
    assert _disconnect.asyncpg_pool(exc, pool) is dead


def test_asyncpg_pool_profile() -> None:
    asyncpg = pytest.importorskip("asyncpg")
    profile = profiles.profile_for(asyncpg.Pool)
    assert profile is not None and profile.disconnect is _disconnect.asyncpg_pool
    assert profile.suggest == "per_loop"
