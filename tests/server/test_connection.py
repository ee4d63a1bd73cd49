"""One connection's deadlines and its last words (server/connection.py), on a real server.

Deadlines a passing byte never resets (empty lines do not keep an idle connection; a body
trickled byte by byte gets 408 under --min-rate), and a refusal delivered while the client is
still sending (half-close, then the rest read and dropped: RFC 9112 §9.6). Each test bounded
in time; servers in child processes, stopped by PID.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from typing import Any

import pytest

from server import config
from server.budget import BodyBudget
from server.connection import CLOSED, READ, READY, TURN_REQUESTS, WRITE, Connection
from server.relay import Relay
from server.scoreboard import Scoreboard
from server.testing import ServerProcess
from server.wsgi import base_environ
from tests.server.client import Client, get


@pytest.mark.integration
def test_refusal_is_delivered_while_the_client_still_sends() -> None:
    """413 for a declared body over --max-body, while the client goes on sending 2 MB of it:
    the client reads the 413 every time (no reset eats it), and the server closes."""
    args = ["--max-body", "100000"]
    with ServerProcess("tests.server.apps:router", workers=1, threads=2, args=args) as srv:
        statuses = []
        for _ in range(5):
            with Client(srv.host, srv.port) as c:
                c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n")
                try:
                    for _ in range(32):
                        c.send(b"x" * 65536)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the server stopped reading after its linger: it may refuse the rest
                try:
                    response = c.read_response()
                except ConnectionResetError:
                    response = None
                statuses.append(response.status if response else None)
                assert c.closed_by_server(5)
        assert statuses == [413] * 5, statuses
        assert get(srv.host, srv.port, "/hello").status == 200


@pytest.mark.integration
def test_empty_lines_do_not_keep_an_idle_connection() -> None:
    """After a response, an empty line every 0.25 s starts the next head's deadline and never
    resets it (before, each CRLF reset the keep-alive timer: the connection stayed for ever)."""
    args = ["--keepalive-timeout", "2", "--header-timeout", "1"]
    with ServerProcess("tests.server.apps:router", workers=1, threads=2, args=args) as srv:
        with Client(srv.host, srv.port) as c:
            c.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            assert c.read_response() is not None
            started = time.monotonic()
            closed = False
            c.sock.settimeout(0.25)
            for _ in range(40):  # 10 s at most
                try:
                    c.send(b"\r\n")
                    data = c.sock.recv(65536)
                except TimeoutError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                closed = True  # the 408 or the close
                c.buffer += data
                break
            assert closed, "empty lines kept the connection past --header-timeout"
            assert time.monotonic() - started < 5


@pytest.mark.integration
def test_a_trickled_body_gets_408() -> None:
    """A body at 5 bytes/s, under --min-rate 1000 and --socket-timeout 1: 408 within a few
    seconds (before, each byte reset the stall timer and the core was held for ever)."""
    args = ["--socket-timeout", "1", "--min-rate", "1000"]
    with ServerProcess("tests.server.apps:router", workers=1, threads=1, args=args) as srv:
        with Client(srv.host, srv.port) as c:
            c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n")
            c.sock.settimeout(0.2)
            started = time.monotonic()
            answer = b""
            for _ in range(50):  # 10 s at most
                try:
                    c.send(b"b")
                    answer = c.sock.recv(65536)
                    break
                except TimeoutError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    break
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
            assert time.monotonic() - started < 6


@pytest.mark.integration
def test_a_fresh_silent_connection_is_closed_after_the_header_timeout() -> None:
    """The first head's deadline runs from accept(): a connection that sends nothing is closed
    (quietly) after --header-timeout, not after a core looked at it."""
    args = ["--header-timeout", "1"]
    with ServerProcess("tests.server.apps:router", workers=1, threads=1, args=args) as srv:
        sock = socket.create_connection((srv.host, srv.port), timeout=10)
        try:
            started = time.monotonic()
            assert sock.recv(1) == b""
            assert 0.9 <= time.monotonic() - started < 4
        finally:
            sock.close()


# -- the connection's state machine over a socketpair (no server, no sleeps) -----------------


class NoEvents:
    """An epoll with nothing to poll (the relay of a worker these tests never run)."""

    def poll(self, timeout: float = -1, maxevents: int = -1) -> list[tuple[int, int]]:
        return []


class FakeWorker:
    """What a Connection needs from its worker (server.connection.WorkerView)."""

    def __init__(self, app: Any) -> None:
        self.config = config.parse(["m:app", "--max-body", "100000"])
        self.app = app
        self.relay = Relay(NoEvents(), 1)  # never started: pause() changes nothing
        self.base_environ = base_environ("127.0.0.1", 80)
        self.scoreboard = Scoreboard(1)
        self.stopping = threading.Event()

    def request_started(self) -> None:
        pass


def big_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = b"x" * 4_000_000
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def no_content_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("204 No Content", [])
    return []


def paired(app: Any) -> tuple[Connection, socket.socket, list[Connection]]:
    """A Connection on one end of a loopback TCP pair (port 0), the client on the other."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=5)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        server_end, _ = listener.accept()
    closed: list[Connection] = []
    worker = FakeWorker(app)
    budget = BodyBudget(worker.config.max_body_buffer)
    return Connection(server_end, ("127.0.0.1", 1), worker, closed.append, budget), client, closed


def test_a_response_going_out_is_not_overtaken_by_the_next_request() -> None:
    """A 4 MB response the client has not read is left to the dispatcher (WRITE); the next
    pipelined request is not read until it is out, and then answered after it."""
    conn, client, _ = paired(big_app)
    try:
        client.sendall(b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert conn.on_readable(time.monotonic()) == READY
        assert conn.serve(0) == WRITE and conn.mode == "write"
        client.sendall(b"GET /2 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert conn.on_readable(time.monotonic()) == WRITE  # EPOLLIN while writing: no read
        assert not conn.parser.has_request and conn.parser.between_requests
        received = 0
        while conn.mode == "write":  # the client reads; the dispatcher sends on each turn
            received += len(client.recv(1 << 20))
            conn.on_writable(time.monotonic())
        assert received < 4_000_000 + 200  # the second response has not started before
        assert conn.on_readable(time.monotonic()) == READY  # now the next request is read
    finally:
        client.close()
        conn.close()


def test_a_long_pipeline_goes_back_in_line_after_its_turn() -> None:
    """20 pipelined requests read at once: a core answers TURN_REQUESTS of them, then the
    connection waits to be writable (at once) and the next core answers the rest."""
    conn, client, _ = paired(no_content_app)
    try:
        client.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n" * 20)
        assert conn.on_readable(time.monotonic()) == READY
        assert conn.serve(0) == READY and conn.served == TURN_REQUESTS
        assert conn.events == select.EPOLLOUT
        assert conn.on_writable(time.monotonic()) == READY
        assert conn.serve(0) == READ and conn.served == 20
    finally:
        client.close()
        conn.close()


def test_expired_head_gets_408_and_the_connection_lingers_then_closes() -> None:
    """The sweep's verdict on a head past its deadline: 408 with Connection: close, then a
    half-close (the client reads EOF after the response), then close."""
    conn, client, closed = paired(big_app)
    try:
        client.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")
        assert conn.on_readable(time.monotonic()) == READ
        conn.deadline = 0.0  # what the sweep sees once --header-timeout has passed
        assert conn.expire() == READ and conn.mode == "linger"
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 408 ") and b"Connection: close" in answer
        client.shutdown(socket.SHUT_WR)
        assert conn.on_readable(time.monotonic()) == CLOSED and closed == [conn]
    finally:
        client.close()
        conn.close()
