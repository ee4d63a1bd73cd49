"""Sans-IO tests of server.wsgi (environ, start_response) and server.response (framing)."""

from __future__ import annotations

import io
import sys
from typing import Any

import pytest

from server import errors, response
from server.parser import RequestParser
from server.response import Framing
from server.wsgi import FileWrapper, ResponseStart, base_environ, build_environ


def environ_for(raw: bytes) -> dict[str, Any]:
    parser = RequestParser(max_header_bytes=8192, max_headers=50, max_body=10_000)
    parser.feed(raw)
    request = parser.next_request()
    assert request is not None
    return build_environ(request, base_environ("127.0.0.1", 8080), ("10.0.0.1", 5555))


ENVIRON_CASES = [
    (
        b"GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: h\r\n\r\n",
        {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/a/b",
            "QUERY_STRING": "x=1&y=2",
            "HTTP_HOST": "h",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "SCRIPT_NAME": "",
        },
    ),
    (
        b"GET /caf%C3%A9%20x HTTP/1.1\r\nHost: t\r\n\r\n",
        {"PATH_INFO": "/caf\xc3\xa9 x", "QUERY_STRING": ""},
    ),
    (b"GET /a%2Fb HTTP/1.1\r\nHost: t\r\n\r\n", {"PATH_INFO": "/a/b"}),
    (
        b"GET http://example.com:81/p/q?z HTTP/1.1\r\nHost: t\r\n\r\n",
        {"PATH_INFO": "/p/q", "QUERY_STRING": "z"},
    ),
    (b"GET http://example.com HTTP/1.1\r\nHost: t\r\n\r\n", {"PATH_INFO": "/", "QUERY_STRING": ""}),
    (b"GET / HTTP/1.0\r\n\r\n", {"SERVER_PROTOCOL": "HTTP/1.0"}),
    (
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nabc",
        {"CONTENT_TYPE": "text/plain", "CONTENT_LENGTH": "3"},
    ),
    (
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        {"CONTENT_LENGTH": "3", "HTTP_TRANSFER_ENCODING": "chunked"},
    ),
    (b"GET / HTTP/1.1\r\nHost: t\r\nX-A: 1\r\nX-A: 2\r\n\r\n", {"HTTP_X_A": "1, 2"}),
    (
        b"GET / HTTP/1.1\r\nHost: t\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n",
        {"HTTP_COOKIE": "a=1; b=2"},
    ),
    (b"GET / HTTP/1.1\r\nHost: t\r\nX-Latin: caf\xe9\r\n\r\n", {"HTTP_X_LATIN": "caf\xe9"}),
]


@pytest.mark.parametrize("raw,expected", ENVIRON_CASES)
def test_environ(raw: bytes, expected: dict[str, str]) -> None:
    environ = environ_for(raw)
    for key, value in expected.items():
        assert environ[key] == value, key


def test_environ_fixed_keys() -> None:
    environ = environ_for(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert environ["SERVER_NAME"] == "127.0.0.1" and environ["SERVER_PORT"] == "8080"
    assert environ["REMOTE_ADDR"] == "10.0.0.1" and environ["REMOTE_PORT"] == "5555"
    assert environ["wsgi.version"] == (1, 0) and environ["wsgi.url_scheme"] == "http"
    assert environ["wsgi.multithread"] is True and environ["wsgi.multiprocess"] is True
    assert environ["wsgi.run_once"] is False and environ["wsgi.errors"] is sys.stderr
    assert environ["wsgi.file_wrapper"] is FileWrapper


def test_underscore_header_is_dropped_not_confused_with_dash() -> None:
    environ = environ_for(b"GET / HTTP/1.1\r\nHost: t\r\nX-User: real\r\nX_User: forged\r\n\r\n")
    assert environ["HTTP_X_USER"] == "real"


def test_input_stream_reads_every_way() -> None:
    body = b"line1\nline2\nlast"
    raw = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    stream = environ_for(raw)["wsgi.input"]
    assert stream.read(3) == b"lin"
    assert stream.readline() == b"e1\n"
    assert stream.readline(3) == b"lin"
    assert list(stream) == [b"e2\n", b"last"]
    assert stream.read() == b"" and stream.read(10) == b""
    stream = environ_for(raw)["wsgi.input"]
    assert stream.readlines() == [b"line1\n", b"line2\n", b"last"]


START_ERRORS = [
    ("200", []),
    ("OK 200", []),
    (b"200 OK", []),
    ("200 OK\r\nX: y", []),
    ("200 OK", [("X-Bad", "a\r\nSet-Cookie: x=1")]),
    ("200 OK", [("X-Bad", "a\nb")]),
    ("200 OK", [("X-Bad", "a\x00b")]),
    ("200 OK", [("X-Bad", "snowman \u2603")]),
    ("200 OK", [("Bad Name", "v")]),
    ("200 OK", [("Bad:Name", "v")]),
    ("200 OK", [("Connection", "close")]),
    ("200 OK", [("Transfer-Encoding", "chunked")]),
    ("200 OK", [("Keep-Alive", "timeout=5")]),
    ("200 OK", [("Content-Length", "12a")]),
    ("200 OK", (("X", "y"),)),
    ("200 OK", [("X", 1)]),
]


@pytest.mark.parametrize("status,headers", START_ERRORS)
def test_start_response_refuses(status: Any, headers: Any) -> None:
    with pytest.raises(errors.ResponseError):
        ResponseStart()(status, headers)


def test_start_response_twice_needs_exc_info() -> None:
    start = ResponseStart()
    start("200 OK", [])
    with pytest.raises(errors.ResponseError):
        start("500 Oops", [])
    try:
        raise ValueError("app failed")
    except ValueError:
        start("500 Internal Server Error", [], sys.exc_info())  # not sent yet: replaces
    assert start.status == "500 Internal Server Error"
    start.sink = _SentSink()
    with pytest.raises(ValueError, match="again"):
        try:
            raise ValueError("again")
        except ValueError:
            start("500 Internal Server Error", [], sys.exc_info())


class _SentSink:
    """A body sink whose head already went out."""

    headers_sent = True

    def write(self, data: bytes) -> None:
        raise AssertionError("not called in this test")


def test_content_length_is_recorded() -> None:
    start = ResponseStart()
    start("200 OK", [("content-length", "42")])
    assert start.content_length == 42


FRAMING = [
    ("GET", "200 OK", "1.1", 10, Framing.LENGTH),
    ("GET", "200 OK", "1.1", None, Framing.CHUNKED),
    ("GET", "200 OK", "1.0", None, Framing.CLOSE),
    ("GET", "200 OK", "1.0", 5, Framing.LENGTH),
    ("HEAD", "200 OK", "1.1", None, Framing.NONE),
    ("HEAD", "200 OK", "1.1", 5, Framing.NONE),
    ("GET", "204 No Content", "1.1", None, Framing.NONE),
    ("GET", "304 Not Modified", "1.1", None, Framing.NONE),
    ("GET", "101 Switching", "1.1", None, Framing.NONE),
]


@pytest.mark.parametrize("method,status,version,length,expected", FRAMING)
def test_framing(
    method: str, status: str, version: str, length: int | None, expected: Framing
) -> None:
    assert response.framing(method, status, version, length) is expected


def test_head_serialization() -> None:
    head = response.serialize_head(
        "200 OK", [("X-A", "1")], chunked=True, keep_alive=False, version="1.1"
    )
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    assert lines[1].startswith(b"Date: ") and lines[1].endswith(b" GMT")
    assert lines[2].startswith(b"Server: ")
    assert (
        b"X-A: 1" in lines
        and b"Transfer-Encoding: chunked" in lines
        and b"Connection: close" in lines
    )
    assert head.endswith(b"\r\n\r\n")
    head10 = response.serialize_head("200 OK", [], chunked=False, keep_alive=True, version="1.0")
    assert b"Connection: keep-alive\r\n" in head10


def test_chunk_encoding() -> None:
    assert response.encode_chunk(b"x" * 26) == b"1a\r\n" + b"x" * 26 + b"\r\n"
    assert response.LAST_CHUNK == b"0\r\n\r\n"


def test_error_response_has_no_request_data() -> None:
    exc = errors.BadRequest("Malformed request: <script>\r\nX-Injected: 1")
    data = response.for_http_error(exc)
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"script" not in data and b"Injected" not in data
    assert b"Connection: close" in data


def test_file_wrapper_iterates_in_blocks_and_closes() -> None:
    stream = io.BytesIO(b"abcdefg")
    wrapper = FileWrapper(stream, 3)
    assert list(wrapper) == [b"abc", b"def", b"g"]
    wrapper.close()
    assert stream.closed
