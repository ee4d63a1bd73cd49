"""Shared pytest configuration: session fixtures over the daemon launchers.

The launchers live in ``examples/support/`` (importable without pytest, so examples and
benchmarks use them too); this file only wraps them in fixtures, so every test directory can use
them. Fixtures for the real database/broker backends are in ``tests/realclients/conftest.py``,
except ``redis_server``, which ``tests/green`` uses too and so lives here.
Each fixture runs in the pytest process (main thread) and stops its daemon by PID at the end of
the session.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from examples.support.backends import Redis
from examples.support.gearmand import Gearmand, Workers, start_gearmand, start_workers
from examples.support.memcached import Memcached


@pytest.fixture(scope="session")
def gearmand() -> Iterator[Gearmand]:
    """A gearmand for the whole session. Tests that kill it must ``start()`` it again."""
    server = start_gearmand()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def gearman_workers(gearmand: Gearmand) -> Iterator[Workers]:
    """Two reverse workers for the whole session; tests that kill one call ``ensure()``."""
    workers = start_workers(gearmand, 2)
    try:
        yield workers
    finally:
        workers.close()


@pytest.fixture(scope="session")
def memcached() -> Iterator[Memcached]:
    """A memcached for the whole session; ``.host``, ``.port``, ``.address``, ``.pid``."""
    server = Memcached()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Redis]:
    """A ``redis-server`` for the whole session (``examples.support.backends.Redis``): the green
    async-client proofs and the real-client tests share it. A missing binary is a failure whose
    message says to run ``scripts/bootstrap.sh``."""
    server = Redis()
    try:
        server.start()
        yield server
    finally:
        server.close()
