"""The backend launchers themselves: start, count, kill, stop leaves no PID (real servers).

Each test opens real client connections with the driver an app would use, and checks the
launcher's server-side view of them: ``connection_count()`` sees exactly ours,
``kill_all_connections()`` breaks them (the next call through the driver fails or reconnects),
and ``stop()`` leaves none of the launcher's processes alive.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psutil  # type: ignore[import-untyped]
import pytest

from examples.support.backends import (
    BACKENDS,
    Backend,
    BackendMissingError,
    MariaDB,
    RabbitMQ,
    item_value,
)

pytestmark = pytest.mark.integration

OPEN = 3  # client connections each test opens


def _connect(server: Backend) -> tuple[Any, Callable[[], object], Callable[[], None]]:
    """(connection, one round trip, close) with the driver an app uses for ``server``."""
    if server.name == "mariadb":
        import pymysql

        conn: Any = pymysql.connect(**server.params, connect_timeout=5, read_timeout=10)

        def query() -> object:
            with conn.cursor() as cur:
                cur.execute("SELECT val FROM items WHERE id = %s", (5,))
                return cur.fetchone()[0]

        return conn, query, conn.close
    if server.name == "postgresql":
        import psycopg2

        conn = psycopg2.connect(**server.params, connect_timeout=5)

        def pg_query() -> object:
            with conn.cursor() as cur:
                cur.execute("SELECT val FROM items WHERE id = %s", (5,))
                return cur.fetchone()[0]

        return conn, pg_query, conn.close
    if server.name == "rabbitmq":
        import pika

        assert isinstance(server, RabbitMQ)
        conn = pika.BlockingConnection(server.connection_parameters())
        channel = conn.channel()

        def declare() -> object:
            return channel.queue_declare(queue="", exclusive=True).method.queue

        return conn, declare, conn.close
    import redis

    conn = redis.Redis(
        **server.params,
        socket_timeout=10,
        single_connection_client=True,
        retry_on_error=[],
        retry=None,
    )

    def get() -> object:
        conn.set("launcher-key", "v")
        return conn.get("launcher-key")

    return conn, get, conn.close


def _wait_count(server: Backend, expected: int, timeout: float = 20.0) -> int:
    """The count once it equals ``expected`` (a closed socket reaches the server a moment
    later), or the last count seen after ``timeout``; polls the server, bounded."""
    deadline = time.monotonic() + timeout
    count = server.connection_count()
    while count != expected and time.monotonic() < deadline:
        time.sleep(0.1)
        count = server.connection_count()
    return count


def test_launcher_counts_and_kills_real_connections(backend: Backend) -> None:
    base = _wait_count(backend, 0)
    assert base == 0, f"{backend.name}: {base} connections before the test opened any"
    opened = [_connect(backend) for _ in range(OPEN)]
    try:
        for _, round_trip, _ in opened:
            assert round_trip() is not None
        assert backend.connection_count() == OPEN, f"{backend.name}: expected {OPEN}"
        killed = backend.kill_all_connections()
        assert killed == OPEN, f"{backend.name}: killed {killed}, expected {OPEN}"
        broken = 0
        for _, round_trip, _ in opened:
            try:
                round_trip()
            except Exception:  # noqa: BLE001 (each driver has its own disconnect error)
                broken += 1
        assert broken == OPEN, f"{backend.name}: only {broken} of {OPEN} noticed the kill"
        assert _wait_count(backend, 0) == 0
    finally:
        for _, _, close in opened:
            try:
                close()
            except Exception:  # noqa: BLE001 (already closed by the kill)
                pass


def test_database_rows_are_seeded(mariadb: Backend, postgresql: Backend) -> None:
    for server in (mariadb, postgresql):
        _, query, close = _connect(server)
        try:
            assert query() == item_value(5), server.name
        finally:
            close()


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_stop_leaves_no_pid(name: str) -> None:
    server = BACKENDS[name]()
    try:
        server.start()
        roots = [server.pid, *(server.pids if isinstance(server, RabbitMQ) else [])]
        # The server's own helpers too: postgres's checkpointer and walwriter, erl_child_setup...
        pids = set(roots)
        for root in roots:
            pids.update(child.pid for child in psutil.Process(root).children(recursive=True))
        scratch = server.scratch
    finally:
        server.close()
    alive = sorted(pid for pid in pids if _alive(pid))
    assert alive == [], (
        f"{name}: {len(alive)} of {len(pids)} PIDs still alive after close(): {alive}"
    )
    assert not scratch.exists(), f"{name}: {scratch} left behind"


def _alive(pid: int) -> bool:
    """Running (a zombie not yet reaped by its parent does not count)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_missing_binary_says_to_run_bootstrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(MariaDB, "binary", classmethod(lambda cls: "/nonexistent/mariadbd"))
    server = MariaDB()
    try:
        with pytest.raises(BackendMissingError, match="run scripts/bootstrap.sh"):
            server.start()
    finally:
        server.close()
