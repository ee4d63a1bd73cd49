"""Property-based fuzzing of request parsing (hypothesis).

Sans-IO: thousands of generated, mutated and random requests per run through the parser; the only
outcomes allowed are complete requests or an HTTPError carrying a 4xx/5xx status (never another
exception). Socket-level: a smaller run against a live server; each connection ends with HTTP
responses and a close (no hang), no worker dies, no internal error is logged, and the next client
is served. ``SERVER_FUZZ_EXAMPLES`` raises the count (the soak-marked test runs 20x more).
"""

from __future__ import annotations

import os
import re
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server import errors
from server.parser import RequestParser
from server.testing import ServerProcess
from tests.server.client import get

EXAMPLES = int(os.environ.get("SERVER_FUZZ_EXAMPLES", "1500"))
ALLOWED = {400, 408, 413, 417, 431, 501, 505}

METHODS = [
    b"GET",
    b"POST",
    b"PUT",
    b"HEAD",
    b"DELETE",
    b"OPTIONS",
    b"PATCH",
    b"CONNECT",
    b"get",
    b"G ET",
    b"",
]
VERSIONS = [
    b"HTTP/1.1",
    b"HTTP/1.0",
    b"HTTP/0.9",
    b"HTTP/2.0",
    b"HTTP/1.1 ",
    b"http/1.1",
    b"HTTP/1.",
    b"",
]
NAMES = [
    b"Host",
    b"Content-Length",
    b"Transfer-Encoding",
    b"Expect",
    b"Connection",
    b"X-A",
    b"X_A",
    b"Cookie",
    b"Content-Type",
    b"Upgrade",
]
VALUES = [
    b"chunked",
    b"gzip, chunked",
    b"chunked, gzip",
    b"5",
    b"-1",
    b"99999999999999999999",
    b"0",
    b"100-continue",
    b"close",
    b"keep-alive",
    b"websocket",
    b"a\x00b",
    b"a\rb",
    b" x ",
    b"",
]

token_bytes = st.binary(min_size=0, max_size=12)
header_name = st.one_of(st.sampled_from(NAMES), token_bytes)
header_value = st.one_of(st.sampled_from(VALUES), st.binary(max_size=20))
line_end = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r", b""])


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    end = draw(line_end)
    out = [
        draw(st.sampled_from(METHODS)),
        b" ",
        draw(st.one_of(st.just(b"/"), st.binary(max_size=16))),
        b" ",
        draw(st.sampled_from(VERSIONS)),
        end,
    ]
    for name, value in draw(st.lists(st.tuples(header_name, header_value), max_size=6)):
        out += [name, draw(st.sampled_from([b": ", b":", b" : ", b""])), value, draw(line_end)]
    out.append(draw(line_end))
    if draw(st.booleans()):
        for size in draw(st.lists(st.integers(0, 20), max_size=3)):
            out += [
                b"%x" % size,
                draw(st.sampled_from([b"", b";ext=1", b";\x01"])),
                b"\r\n",
                b"x" * size,
                b"\r\n",
            ]
    out.append(draw(st.binary(max_size=30)))
    return b"".join(out)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    base = bytearray(
        draw(
            st.sampled_from(
                [
                    b"GET /a?b=c HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
                    b"POST /p HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"3\r\nabc\r\n0\r\n\r\n",
                    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                    b"GET /2 HTTP/1.1\r\nHost: t\r\n\r\n",
                ]
            )
        )
    )
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(base)))
        op = draw(st.sampled_from(["flip", "insert", "delete"]))
        byte = draw(st.integers(0, 255))
        if op == "insert" or pos == len(base):
            base.insert(pos, byte)
        elif op == "flip":
            base[pos] = byte
        else:
            del base[pos]
    return bytes(base)


any_request = st.one_of(requests(), mutated(), st.binary(max_size=200))


def check_parse(data: bytes, split: int) -> None:
    parser = RequestParser(max_header_bytes=512, max_headers=8, max_body=64)
    try:
        for start in range(0, max(len(data), 1), split):
            parser.feed(data[start : start + split])
            while (request := parser.next_request()) is not None:
                assert request.version in ("1.0", "1.1")
                assert len(request.body) <= 64
    except errors.HTTPError as exc:
        assert exc.status in ALLOWED, exc


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_request, st.integers(1, 64))
def test_parser_outcome_is_a_request_or_an_http_error(data: bytes, split: int) -> None:
    check_parse(data, split)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_requests_whole_and_bytewise_agree(data: bytes) -> None:
    """Feeding byte by byte must end the same way as feeding everything at once."""

    def outcome(split: int) -> object:
        parser = RequestParser(max_header_bytes=512, max_headers=8, max_body=64)
        got: list[tuple[str, bytes, bytes]] = []
        try:
            for start in range(0, len(data), split):
                parser.feed(data[start : start + split])
                while (request := parser.next_request()) is not None:
                    got.append((request.method, request.target, bytes(request.body)))
                    if not request.keep_alive or request.upgrade:
                        return (got, "closed")  # the connection ends here, whatever follows
        except errors.HTTPError as exc:
            return (got, exc.status)
        return (got, None)

    assert outcome(len(data) or 1) == outcome(1)


@pytest.mark.soak
@settings(max_examples=EXAMPLES * 20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_request, st.integers(1, 64))
def test_parser_fuzz_long(data: bytes, split: int) -> None:
    check_parse(data, split)


# -- against a live server -------------------------------------------------------------------

STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) ")


@pytest.mark.integration
@settings(
    max_examples=int(EXAMPLES / 20),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.one_of(requests(), mutated()))
def test_live_server_survives_fuzzed_requests(live: ServerProcess, data: bytes) -> None:
    with socket.create_connection((live.host, live.port), timeout=10) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            return  # answered and closed before we finished: a closed connection is allowed.
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
        except TimeoutError:
            pytest.fail(f"the server neither answered nor closed within 10 s for {data!r}")
    for status in STATUS_LINE.findall(received):
        assert 200 <= int(status) < 600


@pytest.mark.integration
def test_live_server_after_fuzzing_is_whole(live: ServerProcess) -> None:
    """Runs after the fuzz test (file order): same workers, no internal error, still serving."""
    assert len(live.worker_pids()) == 2
    log = live.log_text()
    assert "internal error" not in log and "crashed" not in log and "killed" not in log
    assert get(live.host, live.port, "/hello").status == 200
