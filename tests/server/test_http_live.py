"""HTTP/1.1 and PEP 3333 behaviour of the real server, in a child process, over real sockets."""

from __future__ import annotations

import http.client
import json
import re
import socket
import time

import pytest

from server.testing import ServerProcess
from tests.server.client import Client, Response, get

pytestmark = pytest.mark.integration


def client(srv: ServerProcess) -> Client:
    return Client(srv.host, srv.port)


def assert_still_serving(srv: ServerProcess) -> None:
    response = get(srv.host, srv.port, "/hello")
    assert response.status == 200 and response.body == b"Hello, world!\n"


def one(srv: ServerProcess, raw: bytes, **kw: bool) -> Response | None:
    with client(srv) as c:
        c.send(raw)
        return c.read_response(**kw)


# -- the happy paths -------------------------------------------------------------------------


def test_keep_alive_reuses_one_connection(live: ServerProcess) -> None:
    conn = http.client.HTTPConnection(live.host, live.port, timeout=10)
    try:
        pids, ports = set(), set()
        for i in range(20):
            conn.request("GET", f"/echo?i={i}")
            response = conn.getresponse()
            data = json.loads(response.read())
            assert response.status == 200 and data["environ"]["QUERY_STRING"] == f"i={i}"
            pids.add(data["pid"])
            ports.add(data["environ"]["REMOTE_PORT"])
        assert len(ports) == 1 and len(pids) == 1, "all 20 requests rode one connection"
    finally:
        conn.close()


def test_pipelined_requests_answered_in_order(live: ServerProcess) -> None:
    with client(live) as c:
        c.send(b"".join(b"GET /echo/%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in range(5)))
        for i in range(5):
            response = c.read_response()
            assert response is not None and response.status == 200
            assert json.loads(response.body)["environ"]["PATH_INFO"] == f"/echo/{i}"


def test_environ_from_a_real_request(live: ServerProcess) -> None:
    response = get(live.host, live.port, "/echo/caf%C3%A9?q=1")
    data = json.loads(response.body)
    env = data["environ"]
    assert env["PATH_INFO"] == "/echo/caf\xc3\xa9" and env["QUERY_STRING"] == "q=1"
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["SERVER_PORT"] == str(live.port)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1" and env["SCRIPT_NAME"] == ""
    assert data["multithread"] is True and data["multiprocess"] is True
    assert response.header(
        "server",
    ).startswith("safeclients-server/")  # type: ignore[union-attr]
    assert response.header(
        "date",
    ).endswith("GMT")  # type: ignore[union-attr]


def test_chunked_upload_in_odd_pieces(live: ServerProcess) -> None:
    body = bytes(range(256)) * 40
    with client(live) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        for start in range(0, len(body), 999):
            piece = body[start : start + 999]
            c.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        c.send(b"0\r\n\r\n")
        response = c.read_response()
    assert response is not None and response.status == 200
    data = json.loads(response.body)
    assert data["body_length"] == len(body) and data["body"].encode("latin-1") == body
    assert data["environ"]["CONTENT_LENGTH"] == str(len(body))


def test_content_length_upload_split_across_packets(live: ServerProcess) -> None:
    with client(live) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello")
        c.send(b" world")
        response = c.read_response()
    assert response is not None and json.loads(response.body)["body"] == "hello world"


def test_chunked_download(live: ServerProcess) -> None:
    response = one(live, b"GET /stream?n=7 HTTP/1.1\r\nHost: t\r\n\r\n")
    assert response is not None and response.header("transfer-encoding") == "chunked"
    assert response.body == b"".join(b"chunk %d\n" % i for i in range(7))


def test_http10_stream_ends_with_close(live: ServerProcess) -> None:
    with client(live) as c:
        c.send(b"GET /stream?n=3 HTTP/1.0\r\n\r\n")
        response = c.read_response()
        assert response is not None and response.header("transfer-encoding") is None
        assert response.body == b"chunk 0\nchunk 1\nchunk 2\n"
        assert c.closed_by_server(5)


def test_http10_keep_alive_when_asked(live: ServerProcess) -> None:
    with client(live) as c:
        for _ in range(2):
            c.send(b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            response = c.read_response()
            assert response is not None and response.status == 200
            assert response.header("connection") == "keep-alive"


def test_head_has_no_body_and_keeps_the_connection(live: ServerProcess) -> None:
    with client(live) as c:
        c.send(b"HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        head = c.read_response(head_request=True)
        assert head is not None and head.status == 200 and head.header("content-length") == "14"
        c.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        response = c.read_response()
        assert response is not None and response.body == b"Hello, world!\n", (
            "no stray body after HEAD"
        )


def test_connection_close_is_honoured(live: ServerProcess) -> None:
    with client(live) as c:
        c.send(b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        response = c.read_response()
        assert response is not None and response.header("connection") == "close"
        assert c.closed_by_server(5)


def test_expect_100_continue(live: ServerProcess) -> None:
    with client(live) as c:
        c.send(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
        )
        interim = c.read_response()
        assert interim is not None and interim.status == 100
        c.send(b"body")
        response = c.read_response()
        assert response is not None and json.loads(response.body)["body"] == "body"


def test_expect_100_continue_with_too_large_body_gets_413_first(live: ServerProcess) -> None:
    response = one(
        live,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 200000\r\n\r\n",
    )
    assert response is not None and response.status == 413


def test_file_wrapper(live: ServerProcess) -> None:
    from tests.server import apps

    response = get(live.host, live.port, "/file")
    assert response.status == 200 and response.body == (apps.__doc__ or "").encode()


def test_idle_keep_alive_closed_after_timeout(live: ServerProcess) -> None:
    with client(live) as c:
        c.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.read_response() is not None
        started = time.monotonic()
        assert c.closed_by_server(15), "idle connection kept past --keepalive-timeout 2"
        assert time.monotonic() - started >= 1.5


# -- bad input: a 4xx (or a closed connection), and the next client is served ------------------

BAD = [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: t\r\nX Y: z\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n folded\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: t\r\nX: a\x00b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: t\r\nX: a\rb\r\n\r\n", 400),
    (
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n",
        400,
    ),
    (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\nxyz", 501),
    (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3;\x01\r\nabc\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100001\r\n\r\n", 413),
    (b"GET / HTTP/1.1\r\nHost: t\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431),
    (
        b"GET / HTTP/1.1\r\nHost: t\r\n"
        + b"".join(b"X-%d: v\r\n" % i for i in range(60))
        + b"\r\n",
        431,
    ),
    (b"GET / HTTP/3.0\r\n\r\n", 505),
    (b"POST / HTTP/1.1\r\nHost: t\r\nExpect: something\r\nContent-Length: 1\r\n\r\nx", 417),
]


@pytest.mark.parametrize("raw,status", BAD, ids=[f"{s}-{i}" for i, (_, s) in enumerate(BAD)])
def test_bad_input_refused(live: ServerProcess, raw: bytes, status: int) -> None:
    with client(live) as c:
        c.send(raw)
        response = c.read_response()
        assert response is not None and response.status == status
        assert response.header("connection") == "close"
        assert c.closed_by_server(5)
    assert_still_serving(live)


def test_chunked_body_over_limit_is_413(live: ServerProcess) -> None:
    with client(live) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(30):
                c.send(b"1000\r\n" + b"x" * 4096 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed while we were still sending: fine.
        try:
            response = c.read_response()
        except ConnectionResetError:
            response = None  # our unread bytes made the kernel reset: a closed connection.
        assert response is None or response.status == 413
    assert_still_serving(live)


def test_body_that_stops_early(live: ServerProcess) -> None:
    with client(live) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        c.sock.shutdown(socket.SHUT_WR)
        assert c.read_response() is None, "half a body is not a request"
    assert_still_serving(live)


def test_client_disconnecting_mid_response(live: ServerProcess) -> None:
    for _ in range(5):
        with client(live) as c:
            c.send(b"GET /stream?n=200000 HTTP/1.1\r\nHost: t\r\n\r\n")
            c.sock.recv(100)
        # closing with unread data resets the connection under the server's feet
    assert_still_serving(live)
    assert "internal error" not in live.log_text()


def test_slowloris_is_cut_off(live: ServerProcess) -> None:
    with client(live) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n")
        started = time.monotonic()
        c.sock.settimeout(0.2)
        cut = False
        for _ in range(40):  # one header byte every 0.2 s: never completes on its own
            try:
                c.send(b"X")
                data = c.sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                cut = True
                break
            c.buffer += data
            cut = True
            break
        assert cut, "the slow client kept its thread past --header-timeout 1.5"
        assert time.monotonic() - started < 6
        if c.buffer:
            c.sock.settimeout(5)
            response = c.read_response()
            assert response is not None and response.status == 408
    assert_still_serving(live)


def test_silent_connection_is_cut_off(live: ServerProcess) -> None:
    with client(live) as c:
        assert c.closed_by_server(10), "a connection that never sends was kept"
    assert_still_serving(live)


# -- application errors ----------------------------------------------------------------------


def test_app_exception_is_500_without_traceback(live: ServerProcess) -> None:
    mark = live.log_position()
    response = get(live.host, live.port, "/boom")
    assert response.status == 500
    assert b"secret-traceback-marker" not in response.body and b"Traceback" not in response.body
    live.wait_for_log("secret-traceback-marker", after=mark, timeout=10)
    assert_still_serving(live)


def test_header_injection_refused() -> None:
    with ServerProcess("tests.server.apps:router_raw", workers=1, threads=2) as srv:
        with Client(srv.host, srv.port) as c:
            c.send(b"GET /inject HTTP/1.1\r\nHost: t\r\n\r\n")
            response = c.read_response()
        assert response is not None and response.status == 500
        assert b"evil" not in response.raw_head and b"should not be sent" not in response.body
        srv.wait_for_log("header injection", timeout=10)
        hop = get(srv.host, srv.port, "/hop")
        assert hop.status == 500
        srv.wait_for_log("Hop-by-hop header", timeout=10)


def test_file_wrapper_with_sendfile_keeps_the_connection() -> None:
    """Unwrapped app (the validator would hide the file wrapper): the sendfile(2) path."""
    from tests.server import apps

    with open(apps.__file__, "rb") as f:
        expected = f.read()
    with ServerProcess("tests.server.apps:router_raw", workers=1, threads=2) as srv:
        with Client(srv.host, srv.port) as c:
            for _ in range(3):
                c.send(b"GET /sendfile HTTP/1.1\r\nHost: t\r\n\r\n")
                response = c.read_response()
                assert response is not None and response.body == expected
            c.send(b"HEAD /sendfile HTTP/1.1\r\nHost: t\r\n\r\n")
            head = c.read_response(head_request=True)
            assert head is not None and head.header("content-length") == str(len(expected))
            c.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            assert c.read_response().body == b"Hello, world!\n"  # type: ignore[union-attr]


def test_failure_mid_body_closes_and_calls_close(live: ServerProcess) -> None:
    mark = live.log_position()
    with client(live) as c:
        c.send(b"GET /midfail HTTP/1.1\r\nHost: t\r\n\r\n")
        with pytest.raises(ConnectionError):
            c.read_response()  # chunked body cut short: the connection closes, no fake end
    live.wait_for_log("closing-iterable-closed", after=mark, timeout=10)
    assert_still_serving(live)


def test_logs_escape_control_characters(live: ServerProcess) -> None:
    mark = live.log_position()
    get(live.host, live.port, "/boom/%1b%5b31mFORGED%0d%0aFAKE-LINE")
    line = live.wait_for_log(r"application error on GET /boom/", after=mark, timeout=10).string
    assert "\x1b" not in line and "\\x1b" in line
    assert not any(log_line.startswith("FAKE-LINE") for log_line in live.log_text().splitlines())


def test_access_log_line(live: ServerProcess) -> None:
    mark = live.log_position()
    get(live.host, live.port, "/hello?access=1")
    line = live.wait_for_log(
        r'"GET /hello\?access=1 HTTP/1.1" 200 14', after=mark, timeout=10
    ).string
    assert re.search(r"\d+\.\dms", line)
