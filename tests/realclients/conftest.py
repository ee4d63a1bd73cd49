"""Session fixtures: one real MariaDB, PostgreSQL, RabbitMQ and Redis for the whole session.

``redis_server`` is in ``tests/conftest.py`` (``tests/green`` shares it); the rest are here.

Each wraps a launcher from ``examples.support.backends`` (started on a free loopback port with
its data in a temp dir, stopped by PID when the session ends). A missing server binary is a
failure whose message says to run ``scripts/bootstrap.sh``, never a silent skip. Runs in the
pytest process (main thread).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from examples.realclients.targets import (
    DeliveringRestarted,
    MemcachedUrl,
    MqttTarget,
    Restarted,
    Target,
)
from examples.support.backends import Backend, MariaDB, PostgreSQL, RabbitMQ
from examples.support.backends._base import admin_cursor
from examples.support.backends.mosquitto import Mosquitto
from examples.support.ftp import FtpServer
from examples.support.grpc_echo import GrpcEcho
from examples.support.memcached import Memcached
from examples.support.smtp import SmtpHandler, SmtpServer


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
    """The real-client results tables (client x policy x server; the ASGI proof's client x
    form x preload x warm-up), for those whose cases ran."""
    from tests.realclients import test_asgi, test_proof

    for title, table in (
        ("real clients: results", test_proof.results_table()),
        ("ASGI under gunicorn's uvicorn worker: results", test_asgi.results_table()),
    ):
        if table:
            terminalreporter.write_sep("-", title)
            terminalreporter.write_line(table)


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[Backend]:
    yield from _serve(Mosquitto())


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


@pytest.fixture
def smtp_target(smtp_server: SmtpServer) -> Target:
    """The proof's view of a fresh SMTP server: restarted to cut, deliveries counted."""
    return DeliveringRestarted(smtp_server)


@pytest.fixture
def ftp_target(ftp_server: FtpServer) -> Target:
    """The proof's view of a fresh FTP server: restarted to cut, stored files counted."""
    return DeliveringRestarted(ftp_server)


@pytest.fixture
def memcached_target(memcached: Memcached) -> Target:
    """The proof's view of the session's memcached: restarted on its port to cut."""
    return Restarted(MemcachedUrl(memcached))


@pytest.fixture
def grpc_target() -> Iterator[Target]:
    """The proof's view of a fresh gRPC echo server (a child process): restarted on its port
    to cut."""
    with GrpcEcho() as server:
        yield Restarted(server)


@pytest.fixture(scope="session")
def mqtt_target(mosquitto: Mosquitto) -> Iterator[Target]:
    """The proof's view of the session's Mosquitto: restarted on its port to cut; a subscriber
    of its own counts the deliveries."""
    target = MqttTarget(mosquitto)
    try:
        yield target
    finally:
        target.close()
