"""Real servers for the async-client proofs: a local HTTP/1.1 keep-alive server that counts its
open connections. The session ``redis-server`` is ``tests/conftest.py``'s ``redis_server``
(the launcher in ``examples/support/backends/redis.py``, shared with ``tests/realclients``);
its ``connection_count(name)`` and ``wait_connection_count(expected, name)`` count connections by
client name.

The HTTP server runs in a thread of the test process on port 0; its ``open_connections`` drops
when a client closes its keep-alive connection (the handler sees EOF), and ``wait_open``
waits for that on a condition, with a timeout.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

STOP_TIMEOUT = 10.0


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
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="counting-http",
        daemon=True,
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(STOP_TIMEOUT)
