"""Redis (Debian's ``redis-server``) with no persistence, for redis-py apps.

``redis-server`` runs in the foreground on 127.0.0.1 only, with ``--save ""`` and no append-only
file (nothing is written to disk but its log), its working directory in the scratch directory.
The launcher's admin connection is a redis-py client made for each call.

Server-side views: :meth:`connection_count` counts ``CLIENT LIST`` entries other than the asking
one; :meth:`kill_all_connections` runs ``CLIENT KILL TYPE normal`` and ``TYPE pubsub`` (the
asking connection is skipped: ``SKIPME yes`` is the default).
"""

from __future__ import annotations

import shutil
from typing import Any

from ._base import Backend


class Redis(Backend):
    name = "redis"
    package = "redis-server"
    system_user = "redis"

    @classmethod
    def binary(cls) -> str:
        return shutil.which("redis-server") or "/usr/bin/redis-server"

    def _command(self) -> list[str]:
        return [self.binary(), "--bind", self.host, "--port", str(self.port),
                "--dir", str(self.scratch), "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--logfile", str(self.scratch / "redis.log"),
                "--loglevel", "warning", "--maxclients", "1000"]

    def admin(self) -> Any:
        import redis

        return redis.Redis(host=self.host, port=self.port, socket_timeout=10,
                           socket_connect_timeout=5, single_connection_client=True)

    def _ping(self) -> None:
        client = self.admin()
        try:
            client.ping()
        finally:
            client.close()

    @property
    def params(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port}

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def connection_count(self) -> int:
        client = self.admin()
        try:
            me = client.client_id()
            return sum(1 for entry in client.client_list() if int(entry["id"]) != me)
        finally:
            client.close()

    def kill_all_connections(self) -> int:
        client = self.admin()
        try:
            killed = 0
            for kind in ("normal", "pubsub"):
                killed += int(client.execute_command("CLIENT", "KILL", "TYPE", kind,
                                                     "SKIPME", "yes"))
            return killed
        finally:
            client.close()
