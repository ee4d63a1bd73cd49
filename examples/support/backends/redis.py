"""Redis (Debian's ``redis-server``) with no persistence, for redis-py apps.

``redis-server`` runs in the foreground on 127.0.0.1 only, with ``--save ""`` and no append-only
file (nothing is written to disk but its log), its working directory in the scratch directory.
The launcher's admin connection is a redis-py client made for each call. Readiness is a ``PING``
from a server whose ``INFO server`` names our child's PID (so not someone else's server on that
port; ours exits when it cannot bind, and the port is retried).

Server-side views: :meth:`connection_count` counts ``CLIENT LIST`` entries other than the asking
one (with ``name``, only connections that set that client name);
:meth:`wait_connection_count` polls it until it reaches a count (the server drops a closed
connection on its next event-loop turn); :meth:`kill_all_connections` runs ``CLIENT KILL TYPE
normal`` and ``TYPE pubsub`` (the asking connection is skipped: ``SKIPME yes`` is the default).
All run in the calling thread.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

from ._base import Backend
from .errors import BackendAdminError


class Redis(Backend):
    name = "redis"
    package = "redis-server"
    system_user = "redis"

    @classmethod
    def binary(cls) -> str:
        return shutil.which("redis-server") or "/usr/bin/redis-server"

    def _command(self) -> list[str]:
        return [
            self.binary(),
            "--bind",
            self.host,
            "--port",
            str(self.port),
            "--dir",
            str(self.scratch),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            str(self.scratch / "redis.log"),
            "--loglevel",
            "warning",
            "--maxclients",
            "1000",
        ]

    def admin(self) -> Any:
        import redis

        return redis.Redis(
            host=self.host,
            port=self.port,
            socket_timeout=10,
            socket_connect_timeout=5,
            single_connection_client=True,
        )

    def _ping(self) -> None:
        client = self.admin()
        try:
            client.ping()
            owner = int(client.info("server")["process_id"])
        finally:
            client.close()
        if self._proc is None or owner != self._proc.pid:
            raise BackendAdminError(
                f"redis on port {self.port} is process {owner}, "
                f"not ours ({self._proc.pid if self._proc else '-'})"
            )

    @property
    def params(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port}

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def connection_count(self, name: str | None = None) -> int:
        """Client connections (``CLIENT LIST``) but the asking one; with ``name``, only those
        that set that client name."""
        client = self.admin()
        try:
            me = client.client_id()
            return sum(
                1
                for entry in client.client_list()
                if int(entry["id"]) != me and (name is None or entry.get("name") == name)
            )
        finally:
            client.close()

    def wait_connection_count(
        self, expected: int, name: str | None = None, timeout: float = 5.0
    ) -> int:
        """:meth:`connection_count` once it equals ``expected``, or its value at the deadline
        (the caller asserts on it): the server drops a closed connection on its next turn."""
        deadline = time.monotonic() + timeout
        while True:
            count = self.connection_count(name)
            if count == expected or time.monotonic() > deadline:
                return count
            time.sleep(0.02)  # polling an external process, bounded by the deadline

    def kill_all_connections(self) -> int:
        client = self.admin()
        try:
            killed = 0
            for kind in ("normal", "pubsub"):
                killed += int(
                    client.execute_command("CLIENT", "KILL", "TYPE", kind, "SKIPME", "yes")
                )
            return killed
        finally:
            client.close()
