"""One connection's deadlines and its last words (server/connection.py), on a real server.

Deadlines a passing byte never resets (empty lines do not keep an idle connection; a body
trickled byte by byte gets 408 under --min-rate), and a refusal delivered while the client is
still sending (half-close, then the rest read and dropped: RFC 9112 §9.6). Each test bounded
in time; servers in child processes, stopped by PID.
"""

from __future__ import annotations

import socket
import time

import pytest

from server.testing import ServerProcess
from tests.server.client import Client, get

pytestmark = pytest.mark.integration


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
