"""MariaDB (Debian's ``mariadb-server``) in a temporary data directory, for PyMySQL apps.

``mariadb-install-db`` creates the system tables once (about a second); ``mariadbd`` then runs
with ``--no-defaults`` (no ``/etc/mysql``), TCP on 127.0.0.1 only, its socket, pid file and logs
in the scratch directory, and the cheapest durability settings (no binlog, no flush per commit,
a 32 MB buffer pool). The launcher's admin connection is ``root`` over the unix socket; apps
connect as ``app`` over TCP (:attr:`MariaDB.params`).

Server-side views: :meth:`connection_count` counts ``information_schema.PROCESSLIST`` rows other
than the asking connection and the server's own daemon threads; :meth:`kill_all_connections`
runs ``KILL CONNECTION`` on each (what a restart or a failover does to clients).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ._base import Backend, admin_cursor
from .data import APP_DATABASE, APP_PASSWORD, APP_USER, item_rows
from .errors import BackendAdminError

OTHERS = (
    "SELECT ID FROM information_schema.PROCESSLIST "
    "WHERE ID <> CONNECTION_ID() AND COMMAND NOT IN ('Daemon', 'Binlog Dump')"
)


class MariaDB(Backend):
    name = "mariadb"
    package = "mariadb-server"
    system_user = "mysql"

    @classmethod
    def binary(cls) -> str:
        return shutil.which("mariadbd") or "/usr/sbin/mariadbd"

    @property
    def datadir(self) -> Path:
        return self.scratch / "data"

    @property
    def socket_path(self) -> Path:
        return self.scratch / "mysqld.sock"

    def _prepare(self) -> None:
        install = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
        self.run_command(
            [
                install,
                "--no-defaults",
                f"--datadir={self.datadir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ]
        )

    def _command(self) -> list[str]:
        return [
            self.binary(),
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.socket_path}",
            f"--pid-file={self.scratch / 'mysqld.pid'}",
            f"--log-error={self.scratch / 'error.log'}",
            f"--bind-address={self.host}",
            f"--port={self.port}",
            "--skip-name-resolve",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=32M",
            "--innodb-log-file-size=16M",
            "--innodb-flush-log-at-trx-commit=0",
            "--performance-schema=OFF",
            "--max-connections=300",
            "--thread-cache-size=0",
        ]

    def admin(self) -> Any:
        """A new root connection over the unix socket (autocommit); the caller closes it."""
        import pymysql  # type: ignore[import-untyped]

        return pymysql.connect(
            unix_socket=str(self.socket_path),
            user="root",
            password="",
            autocommit=True,
            connect_timeout=5,
            read_timeout=30,
            write_timeout=30,
        )

    def _ping(self) -> None:
        with admin_cursor(self.admin()) as cur:
            cur.execute("SELECT 1")
            if cur.fetchone() != (1,):
                raise BackendAdminError("mariadb answered SELECT 1 with something else")

    def _setup(self) -> None:
        with admin_cursor(self.admin()) as cur:
            cur.execute(f"CREATE DATABASE {APP_DATABASE}")
            cur.execute(f"CREATE USER '{APP_USER}'@'%' IDENTIFIED BY '{APP_PASSWORD}'")
            cur.execute(f"GRANT ALL ON {APP_DATABASE}.* TO '{APP_USER}'@'%'")
            cur.execute(
                f"CREATE TABLE {APP_DATABASE}.items (id INT PRIMARY KEY, val VARCHAR(64) NOT NULL)"
            )
            cur.executemany(
                f"INSERT INTO {APP_DATABASE}.items (id, val) VALUES (%s, %s)", item_rows()
            )

    @property
    def params(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "user": APP_USER,
            "password": APP_PASSWORD,
            "database": APP_DATABASE,
        }

    @property
    def url(self) -> str:
        return f"mysql://{APP_USER}:{APP_PASSWORD}@{self.host}:{self.port}/{APP_DATABASE}"

    def _others(self, cur: Any) -> list[int]:
        cur.execute(OTHERS)
        return [int(row[0]) for row in cur.fetchall()]

    def connection_count(self) -> int:
        with admin_cursor(self.admin()) as cur:
            return len(self._others(cur))

    def kill_all_connections(self) -> int:
        import pymysql

        killed = 0
        with admin_cursor(self.admin()) as cur:
            for conn_id in self._others(cur):
                try:
                    cur.execute(f"KILL CONNECTION {conn_id}")
                    killed += 1
                except pymysql.err.OperationalError as exc:
                    if exc.args[0] != 1094:  # ER_NO_SUCH_THREAD: it went by itself
                        raise
        return killed
