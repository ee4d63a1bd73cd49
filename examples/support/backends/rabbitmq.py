"""RabbitMQ (Debian's ``rabbitmq-server``) as a private Erlang node, for pika apps.

Everything a node shares by default is made private: its own node name
(``safeclients<port>@localhost``), AMQP port, distribution port (``RABBITMQ_DIST_PORT``) and
``epmd`` port (``ERL_EPMD_PORT``: we start that ``epmd`` ourselves, in the foreground, so it is
stopped by PID like the node; otherwise the VM would start a daemonized one that outlives us),
its Erlang cookie and ``HOME``, mnesia and log directories, config, env and enabled-plugins
files (no plugins: the cheapest boot, about 5 s). The schedulers do not busy-wait
(``+sbwt none``), which matters on a 2-core machine shared with the load.

We run ``rabbitmq-server`` (the script, not the ``/usr/sbin`` wrapper that su's and writes to
``/var/log``): it traps SIGTERM and stops the VM, so stopping it by PID stops the broker; its
process group is SIGKILLed afterwards.

Server-side views (through ``rabbitmqctl``, over Erlang distribution, so no AMQP connection of
ours is counted): :meth:`connection_count` is ``list_connections``; :meth:`kill_all_connections`
is ``close_all_connections``. Each ``rabbitmqctl`` call costs about a second (it boots a VM).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ..processes import start_daemon, stop_process
from ._base import HOST, STOP_TIMEOUT, Backend, port_answers, wait_until

SBIN = Path("/usr/lib/rabbitmq/bin")


class RabbitMQ(Backend):
    name = "rabbitmq"
    package = "rabbitmq-server"
    system_user = "rabbitmq"
    ports_needed = 3  # AMQP, Erlang distribution, epmd

    def __init__(self, host: str = HOST) -> None:
        super().__init__(host)
        self._epmd: subprocess.Popen[bytes] | None = None
        self._cookie = secrets.token_hex(16)

    @classmethod
    def binary(cls) -> str:
        return str(SBIN / "rabbitmq-server")

    @property
    def nodename(self) -> str:
        return f"safeclients{self.port}@localhost"

    @property
    def dist_port(self) -> int:
        return self.extra_ports[0]

    @property
    def epmd_port(self) -> int:
        return self.extra_ports[1]

    def _prepare(self) -> None:
        (self.scratch / "mnesia").mkdir()
        (self.scratch / "log").mkdir()
        (self.scratch / "enabled_plugins").write_text("[].\n")
        (self.scratch / "rabbitmq-env.conf").write_text("")
        (self.scratch / "rabbitmq.conf").write_text(
            "log.console = true\nlog.console.level = warning\nlog.file = false\n"
        )
        cookie = self.scratch / ".erlang.cookie"
        cookie.write_text(self._cookie)
        cookie.chmod(0o400)

    def _env(self) -> dict[str, str]:
        d = self.scratch
        return {
            "HOME": str(d),
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": self.host,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": self.host,
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_LOGS": "-",
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(d / "rabbit.pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "+sbwt none +sbwtdcpu none +sbwtdio none",
            "RABBITMQ_CTL_ERL_ARGS": "+sbwt none",
        }

    def _command(self) -> list[str]:
        self._start_epmd()
        return [self.binary()]

    def _start_epmd(self) -> None:
        """Our own epmd on ``epmd_port``, in the foreground (so it has a PID we can stop)."""
        self._stop_epmd()
        epmd = shutil.which("epmd") or "/usr/bin/epmd"
        proc = self._epmd = start_daemon(
            [epmd, "-port", str(self.epmd_port), "-address", self.host],
            output=self.scratch / "epmd.log",
            cwd=self.scratch,
            user_ids=self.user_ids(),
        )
        wait_until(
            lambda: proc.poll() is not None or port_answers(self.host, self.epmd_port),
            10.0,
            f"epmd on port {self.epmd_port}",
        )

    def _stop_epmd(self) -> None:
        """SIGTERM our epmd by PID, wait, SIGKILL its group. Idempotent."""
        proc, self._epmd = self._epmd, None
        if proc is not None:
            stop_process(proc, timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self._stop_epmd()

    def _ping(self) -> None:
        import pika  # type: ignore[import-untyped]

        conn = pika.BlockingConnection(self.connection_parameters())
        try:
            channel = conn.channel()
            channel.queue_declare(queue="", exclusive=True)
        finally:
            conn.close()

    def connection_parameters(self) -> Any:
        import pika

        return pika.ConnectionParameters(
            host=self.host,
            port=self.port,
            credentials=pika.PlainCredentials("guest", "guest"),
            socket_timeout=5,
            blocked_connection_timeout=30,
            connection_attempts=1,
        )

    @property
    def params(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "username": "guest", "password": "guest"}

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{self.host}:{self.port}/%2F"

    @property
    def pids(self) -> list[int]:
        """The broker's and its epmd's PIDs (both ours to stop)."""
        return [p.pid for p in (self._proc, self._epmd) if p is not None and p.poll() is None]

    def rabbitmqctl(self, *args: str) -> str:
        return self.run_command(
            [str(SBIN / "rabbitmqctl"), "-n", self.nodename, "-q", *args],
            env={**self._env(), "HOME": str(self.scratch)},
        )

    def connection_count(self) -> int:
        out = self.rabbitmqctl("list_connections", "--no-table-headers", "pid")
        return sum(1 for line in out.splitlines() if line.strip().startswith("<"))

    def kill_all_connections(self) -> int:
        """``close_all_connections``; return how many were open.

        The broker sends each client ``connection.close`` and keeps the connection listed until
        the client answers (pika answers on its next I/O) or a timeout: an idle app's
        connections stay in :meth:`connection_count` until they are next used.
        """
        before = self.connection_count()
        self.rabbitmqctl("close_all_connections", "killed by the safeclients test launcher")
        return before
