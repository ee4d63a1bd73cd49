"""Session fixtures: one real MariaDB, PostgreSQL, RabbitMQ and Redis for the whole session.

``redis_server`` is in ``tests/conftest.py`` (``tests/green`` shares it); the rest are here.

Each wraps a launcher from ``examples.support.backends`` (started on a free loopback port with
its data in a temp dir, stopped by PID when the session ends). A missing server binary is a
failure whose message says to run ``scripts/bootstrap.sh``, never a silent skip. Runs in the
pytest process (main thread).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from examples.support.backends import Backend, MariaDB, PostgreSQL, RabbitMQ
from examples.support.backends._base import admin_cursor
from examples.support.backends.mosquitto import Mosquitto
from examples.support.processes import free_port


def _serve(backend: Backend) -> Iterator[Backend]:
    try:
        backend.start()
        yield backend
    finally:
        backend.close()


@pytest.fixture(scope="session")
def mariadb() -> Iterator[Backend]:
    yield from _serve(MariaDB())


@pytest.fixture(scope="session")
def postgresql() -> Iterator[Backend]:
    yield from _serve(PostgreSQL())


@pytest.fixture(scope="session")
def rabbitmq() -> Iterator[Backend]:
    yield from _serve(RabbitMQ())


@pytest.fixture(params=["mariadb", "postgresql", "rabbitmq", "redis_server"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each of the four session backends in turn."""
    server: Backend = request.getfixturevalue(request.param)
    return server


@pytest.fixture
def mysql_table(mariadb: MariaDB) -> Iterator[str]:
    """A fresh InnoDB table ``app.<name> (id INT PRIMARY KEY)`` for one test, dropped after."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with admin_cursor(mariadb.admin()) as cur:
        cur.execute(f"CREATE TABLE app.{name} (id INT PRIMARY KEY) ENGINE=InnoDB")
        cur.execute(f"GRANT ALL ON app.{name} TO 'app'@'%'")
    try:
        yield name
    finally:
        with admin_cursor(mariadb.admin()) as cur:
            cur.execute(f"DROP TABLE app.{name}")


@pytest.fixture
def pg_table(postgresql: PostgreSQL) -> Iterator[str]:
    """A fresh table ``<name> (id INT PRIMARY KEY)`` owned by the app user, dropped after."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with admin_cursor(postgresql.admin("app")) as cur:
        cur.execute(f"CREATE TABLE {name} (id INT PRIMARY KEY)")
        cur.execute(f"ALTER TABLE {name} OWNER TO app")
    try:
        yield name
    finally:
        with admin_cursor(postgresql.admin("app")) as cur:
            cur.execute(f"DROP TABLE {name}")


def table_ids(server: MariaDB | PostgreSQL, table: str) -> list[int]:
    """The ids in ``table`` (made by ``mysql_table`` or ``pg_table``), read by the launcher."""
    if isinstance(server, MariaDB):
        admin, name = server.admin(), f"app.{table}"
    else:
        admin, name = server.admin("app"), table
    with admin_cursor(admin) as cur:
        cur.execute(f"SELECT id FROM {name} ORDER BY id")
        return [row[0] for row in cur.fetchall()]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The real-client results table (client x policy x server), when any case ran."""
    from tests.realclients.test_proof import results_table

    table = results_table()
    if table:
        terminalreporter.write_sep("-", "real clients: results")
        terminalreporter.write_line(table)


class FtpServer:
    """pyftpdlib serving ``root`` to an anonymous user on a free loopback port, in a thread of
    the test process; ``close_next`` makes the next command of any session get "421" and a
    closed connection (a server's idle timeout or shutdown). ``restart()`` cuts every session
    and serves again on the same port."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.close_next = threading.Event()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def factory(self) -> Any:
        import ftplib

        ftp = ftplib.FTP()
        ftp.connect("127.0.0.1", self.port, timeout=10)
        ftp.login()
        return ftp

    def start(self) -> None:
        from pyftpdlib.authorizers import DummyAuthorizer  # type: ignore[import-untyped]
        from pyftpdlib.handlers import FTPHandler  # type: ignore[import-untyped]
        from pyftpdlib.servers import FTPServer  # type: ignore[import-untyped]

        close_next = self.close_next

        class Handler(FTPHandler):  # type: ignore[misc]
            def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
                if close_next.is_set():
                    close_next.clear()
                    self.respond("421 Service not available, closing control connection.")
                    self.close_when_done()
                    return
                super().pre_process_command(line, cmd, arg)

        authorizer = DummyAuthorizer()
        authorizer.add_anonymous(str(self.root))
        Handler.authorizer = authorizer
        self._server = FTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"timeout": 0.05}, name="ftp-server"
        )
        self._thread.start()

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.close_all()  # ends serve_forever's loop
        if thread is not None:
            thread.join(30)
            assert not thread.is_alive(), "the FTP server's thread did not stop"

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[Backend]:
    yield from _serve(Mosquitto())


class SmtpHandler:
    """Delivers; refuses ``nobody@`` with 550 and answers 421 to ``shutdown@`` (smtplib then
    closes its session); answers NOOP with 421 and closes the session once ``time_out`` is set
    (an idle timeout: Postfix's smtpd_timeout, Exim's smtp_receive_timeout)."""

    def __init__(self) -> None:
        self.time_out = threading.Event()
        self.delivered: list[list[str]] = []
        self.lock = threading.Lock()  # guards delivered (the server's loop thread appends)

    async def handle_NOOP(self, server: Any, session: Any, envelope: Any, arg: str) -> str:
        if self.time_out.is_set():
            self.time_out.clear()
            asyncio.get_running_loop().call_soon(server.transport.close)
            return "421 4.4.2 Timeout exceeded, closing connection"
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 No such user"
        if address.startswith("shutdown@"):
            return "421 4.3.2 Service shutting down"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.delivered.append(list(envelope.rcpt_tos))
        return "250 Message accepted"


class SmtpServer:
    """aiosmtpd on a free loopback port; ``restart()`` cuts every session and serves again on
    the same port (a new Controller: one cannot be started twice)."""

    def __init__(self, handler: SmtpHandler) -> None:
        self.handler = handler
        self.port = free_port()
        self.controller: Any = None

    def factory(self) -> Any:
        import smtplib

        return smtplib.SMTP("127.0.0.1", self.port, timeout=10)

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        self.controller = Controller(
            self.handler, hostname="127.0.0.1", port=self.port, ready_timeout=10
        )
        self.controller.start()

    def stop(self) -> None:
        controller, self.controller = self.controller, None
        if controller is not None:
            controller.stop()

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer(SmtpHandler())
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def ftp_server(tmp_path: Path) -> Iterator[FtpServer]:
    server = FtpServer(tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.stop()
