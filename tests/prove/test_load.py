"""The requests ``prove`` sends (``safeclients._prove.load``): counted by status, errors by name,
bounded. Against a small ``http.server`` on 127.0.0.1 port 0, in a thread of the test process."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from safeclients._prove.load import send


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as our server speaks

    def do_GET(self) -> None:
        if self.path == "/hang-up":
            self.close_connection = True
            return  # no response at all: the client sees the connection end
        status = 200 if self.path.startswith("/ok") else 404
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="http-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_requests_are_spread_over_the_paths_and_counted_by_status(url: str) -> None:
    tally = send(url, ["/ok?x=1", "/missing"], requests=20, concurrency=4, timeout=5, deadline=60)
    assert tally == {"200": 10, "404": 10}


def test_a_connection_that_ends_without_an_answer_is_counted_by_its_exception(url: str) -> None:
    tally = send(url, ["/hang-up", "/ok"], requests=6, concurrency=2, timeout=5, deadline=60)
    assert tally == {"error: RemoteDisconnected": 3, "200": 3}


def test_past_the_deadline_no_request_is_sent(url: str) -> None:
    tally = send(url, ["/ok"], requests=7, concurrency=2, timeout=5, deadline=0)
    assert tally == {"not sent": 7}
