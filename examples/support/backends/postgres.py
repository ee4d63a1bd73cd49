"""PostgreSQL (Debian's ``postgresql``) in a temporary cluster, for psycopg2 apps.

``initdb`` (trust authentication, no fsync, C locale) creates the cluster once; ``postgres``
then listens on 127.0.0.1 only, with its unix socket in the scratch directory and durability
off (``fsync``, ``synchronous_commit``, ``full_page_writes``). PostgreSQL refuses to run as root,
so as root both run as the ``postgres`` system user (see ``_base``). The launcher's admin
connection is the ``postgres`` superuser over the unix socket; apps connect as ``app`` over TCP.

Server-side views: :meth:`connection_count` counts ``pg_stat_activity`` rows of type
``client backend`` other than the asking one; :meth:`kill_all_connections` runs
``pg_terminate_backend`` on each and returns once they have exited (its timeout argument).
"""

from __future__ import annotations

import glob
import shutil
from pathlib import Path
from typing import Any

from ._base import Backend, admin_cursor
from .data import APP_DATABASE, APP_PASSWORD, APP_USER, item_rows

TERMINATE_WAIT_MS = 5000  # how long pg_terminate_backend waits for each backend to exit
OTHERS = (
    "SELECT pid FROM pg_stat_activity "
    "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
)


def _bindir() -> Path:
    """The newest ``/usr/lib/postgresql/N/bin`` (Debian keeps the server binaries off PATH)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    return Path(on_path).resolve().parent if on_path else Path("/usr/lib/postgresql/15/bin")


class PostgreSQL(Backend):
    name = "postgresql"
    package = "postgresql"
    system_user = "postgres"

    @classmethod
    def binary(cls) -> str:
        return str(_bindir() / "postgres")

    @property
    def datadir(self) -> Path:
        return self.scratch / "data"

    def _prepare(self) -> None:
        self.run_command(
            [
                str(_bindir() / "initdb"),
                "-D",
                str(self.datadir),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ]
        )

    def _command(self) -> list[str]:
        return [
            self.binary(),
            "-D",
            str(self.datadir),
            "-p",
            str(self.port),
            "-h",
            self.host,
            "-k",
            str(self.scratch),
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "shared_buffers=16MB",
            "-c",
            "max_connections=200",
            "-c",
            "logging_collector=off",
            "-c",
            "log_min_messages=warning",
        ]

    def admin(self, database: str = "postgres") -> Any:
        """A new superuser connection over the unix socket (autocommit); the caller closes it."""
        import psycopg2  # type: ignore[import-untyped]

        conn = psycopg2.connect(
            host=str(self.scratch),
            port=self.port,
            user="postgres",
            dbname=database,
            connect_timeout=5,
        )
        conn.autocommit = True
        return conn

    def _ping(self) -> None:
        with admin_cursor(self.admin()) as cur:
            cur.execute("SELECT 1")
            cur.fetchone()

    def _setup(self) -> None:
        with admin_cursor(self.admin()) as cur:
            cur.execute(f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{APP_PASSWORD}'")
            cur.execute(f"CREATE DATABASE {APP_DATABASE} OWNER {APP_USER}")
        with admin_cursor(self.admin(APP_DATABASE)) as cur:
            cur.execute("CREATE TABLE items (id INT PRIMARY KEY, val TEXT NOT NULL)")
            cur.executemany("INSERT INTO items (id, val) VALUES (%s, %s)", item_rows())
            cur.execute(f"ALTER TABLE items OWNER TO {APP_USER}")

    @property
    def params(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "user": APP_USER,
            "password": APP_PASSWORD,
            "dbname": APP_DATABASE,
        }

    @property
    def url(self) -> str:
        return f"postgresql://{APP_USER}:{APP_PASSWORD}@{self.host}:{self.port}/{APP_DATABASE}"

    def connection_count(self) -> int:
        with admin_cursor(self.admin()) as cur:
            cur.execute(OTHERS)
            return len(cur.fetchall())

    def kill_all_connections(self) -> int:
        with admin_cursor(self.admin()) as cur:
            # With a timeout (PostgreSQL >= 14) each call returns once that backend has exited,
            # so the kill has happened when this returns: a client's next use meets a closed
            # connection, not one still being terminated.
            cur.execute(
                f"SELECT pg_terminate_backend(pid, {TERMINATE_WAIT_MS}) FROM ({OTHERS}) AS others"
            )
            return sum(1 for (done,) in cur.fetchall() if done)
