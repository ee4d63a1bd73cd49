"""Session fixtures: one real MariaDB, PostgreSQL, RabbitMQ and Redis for the whole session.

``redis_server`` is in ``tests/conftest.py`` (``tests/green`` shares it); the rest are here.

Each wraps a launcher from ``examples.support.backends`` (started on a free loopback port with
its data in a temp dir, stopped by PID when the session ends). A missing server binary is a
failure whose message says to run ``scripts/bootstrap.sh``, never a silent skip. Runs in the
pytest process (main thread).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from examples.support.backends import Backend, MariaDB, PostgreSQL, RabbitMQ


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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The real-client results table (client x policy x server), when any case ran."""
    from tests.realclients.test_proof import results_table

    table = results_table()
    if table:
        terminalreporter.write_sep("-", "real clients: results")
        terminalreporter.write_line(table)
