"""Real servers for the async-client proofs: a session ``redis-server`` and a local HTTP/1.1
keep-alive server that counts its open connections.

``redis-server`` (Debian's package; ``scripts/bootstrap.sh`` installs it) cannot be told to bind
port 0 and report it, so, as for gearmand, the fixture picks a random port below the kernel's
ephemeral range that nothing answers on, starts ``redis-server --port P --save '' --appendonly
no``, waits for a real ``PING`` and accepts the port only when ``INFO server`` names our
child's PID (bounded attempts). It is stopped by PID when the session ends. (Another branch adds
a launcher in ``examples/support/redis.py``; this fixture is the stand-in until it lands.)

The HTTP server runs in a thread of the test process on port 0; its ``open_connections`` drops
when a client closes its keep-alive connection (the handler sees EOF), and ``wait_closed``
waits for that on a condition, with a timeout.
"""

from __future__ import annotations

import http.server
import random
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
READY_TIMEOUT = 10.0
PORT_ATTEMPTS = 6
STOP_TIMEOUT = 10.0


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` child on 127.0.0.1; ``client_count()`` counts its connections."""

    def __init__(self) -> None:
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        import redis

        low, high = 20000, min(32767, _ephemeral_low() - 1)
        for _ in range(PORT_ATTEMPTS):
            port = random.randint(low, high)
            if _answers(port):
                continue
            proc = subprocess.Popen(
                [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--daemonize", "no"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + READY_TIMEOUT
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    admin = redis.Redis(port=port, socket_timeout=1.0)
                    if admin.ping() and int(admin.info("server")["process_id"]) == proc.pid:
                        admin.close()
                        self.port, self.proc = port, proc
                        return self
                    break  # someone else's server on that port
                except redis.exceptions.ConnectionError:
                    time.sleep(0.05)  # an external process starting: no event to wait on
            self._kill(proc)
        raise RuntimeError(f"redis-server did not start on any of {PORT_ATTEMPTS} random ports")

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            self._kill(proc)

    def client_count(self, name: str | None = None) -> int:
        """Connections the server holds (``CLIENT LIST``), not counting the one asking; with
        ``name``, only those that set that client name."""
        import redis

        admin = redis.Redis(port=self.port, socket_timeout=5.0)
        try:
            me = admin.client_id()
            return sum(1 for c in admin.client_list()
                       if int(c["id"]) != me and (name is None or c.get("name") == name))
        finally:
            admin.close()

    def wait_count(self, expected: int, name: str | None = None, timeout: float = 5.0) -> int:
        """``client_count()`` once it equals ``expected`` (or at the deadline): the server drops
        a closed connection on its next event-loop turn."""
        deadline = time.monotonic() + timeout
        while True:
            count = self.client_count(name)
            if count == expected or time.monotonic() > deadline:
                return count
            time.sleep(0.02)  # polling an external process, bounded by the deadline


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed (scripts/bootstrap.sh installs it)")
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client's pooled connection stays open
    server: CountingHTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.opened()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.closed()

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        body = query.get("v", [""])[0].encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class CountingHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # 20 tasks connect at once: the default backlog of 5 drops SYNs

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        # Guards open_connections and total_connections; notified on every close.
        self.changed = threading.Condition()
        self.open_connections = 0
        self.total_connections = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def opened(self) -> None:
        with self.changed:
            self.open_connections += 1
            self.total_connections += 1

    def closed(self) -> None:
        with self.changed:
            self.open_connections -= 1
            self.changed.notify_all()

    def wait_open(self, expected: int, timeout: float = 5.0) -> int:
        with self.changed:
            self.changed.wait_for(lambda: self.open_connections == expected, timeout)
            return self.open_connections


@pytest.fixture
def http_server() -> Iterator[CountingHTTPServer]:
    server = CountingHTTPServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="counting-http", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(STOP_TIMEOUT)
