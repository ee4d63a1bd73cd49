"""Sans-IO tests of server.parser: tables of raw requests and what must come out (no sockets)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from server import errors
from server.parser import Request, RequestParser

LIMITS = dict(max_header_bytes=1024, max_headers=10, max_body=100)


def parse_all(data: bytes, *, split: int | None = None, **limits: int) -> list[Request]:
    parser = RequestParser(**{**LIMITS, **limits})
    pieces = [data] if split is None else [data[i : i + split] for i in range(0, len(data), split)]
    out = []
    for piece in pieces:
        parser.feed(piece)
        while (request := parser.next_request()) is not None:
            out.append(request)
    return out


VALID = [
    # (id, raw request, method, target, version, keep_alive, body)
    ("any-token-method", b"FOO / HTTP/1.1\r\nHost: t\r\n\r\n", "FOO", b"/", "1.1", True, b""),
    ("get", b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n", "GET", b"/a?b=1", "1.1", True, b""),
    ("http10", b"GET / HTTP/1.0\r\n\r\n", "GET", b"/", "1.0", False, b""),
    (
        "http10-keepalive",
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "GET",
        b"/",
        "1.0",
        True,
        b"",
    ),
    (
        "close",
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "GET",
        b"/",
        "1.1",
        False,
        b"",
    ),
    (
        "content-length",
        b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
        "POST",
        b"/p",
        "1.1",
        True,
        b"hello",
    ),
    (
        "chunked",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        "POST",
        b"/",
        "1.1",
        True,
        b"abcde",
    ),
    (
        "chunk-extension",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;x=y\r\nabc\r\n0\r\n\r\n",
        "POST",
        b"/",
        "1.1",
        True,
        b"abc",
    ),
    (
        "trailer",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"1\r\na\r\n0\r\nX-T: 1\r\n\r\n",
        "POST",
        b"/",
        "1.1",
        True,
        b"a",
    ),
    (
        "absolute-form",
        b"GET http://h:1/p?q HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET",
        b"http://h:1/p?q",
        "1.1",
        True,
        b"",
    ),
    ("asterisk", b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n", "OPTIONS", b"*", "1.1", True, b""),
    ("head", b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n", "HEAD", b"/", "1.1", True, b""),
    (
        "body-at-limit",
        b"PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n" + b"x" * 100,
        "PUT",
        b"/",
        "1.1",
        True,
        b"x" * 100,
    ),
]


@pytest.mark.parametrize("split", [None, 1, 7])
@pytest.mark.parametrize("case", VALID, ids=[c[0] for c in VALID])
def test_valid_requests(case: tuple[Any, ...], split: int | None) -> None:
    _, raw, method, target, version, keep_alive, body = case
    (request,) = parse_all(raw, split=split)
    assert (request.method, request.target, request.version) == (method, target, version)
    assert request.keep_alive is keep_alive
    assert bytes(request.body) == body


INVALID = [
    # (id, raw request, expected error class)
    ("garbage", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", errors.BadRequest),
    ("no-version", b"GET /\r\n\r\n", errors.VersionNotSupported),
    ("bad-version", b"GET / HTTP/2.7\r\n\r\n", errors.VersionNotSupported),
    ("space-in-target", b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n", errors.BadRequest),
    ("not-a-token-method", b"F(O / HTTP/1.1\r\nHost: t\r\n\r\n", errors.BadRequest),
    ("cr-before-method", b"\rGET / HTTP/1.1\r\nHost: t\r\n\r\n", errors.BadRequest),
    ("lf-only", b"GET / HTTP/1.1\nHost: x\n\n", errors.BadRequest),
    ("header-no-colon", b"GET / HTTP/1.1\r\nHost x\r\n\r\n", errors.BadRequest),
    ("space-in-name", b"GET / HTTP/1.1\r\nHost: t\r\nX Y: a\r\n\r\n", errors.BadRequest),
    ("space-before-colon", b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", errors.BadRequest),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n", errors.BadRequest),
    ("nul-in-value", b"GET / HTTP/1.1\r\nHost: t\r\nX: a\x00b\r\n\r\n", errors.BadRequest),
    ("bare-cr", b"GET / HTTP/1.1\r\nHost: t\r\nX: a\rb\r\n\r\n", errors.BadRequest),
    (
        "cl-and-te",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n",
        errors.BadRequest,
    ),
    (
        "te-and-cl",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
        b"0\r\n\r\n",
        errors.BadRequest,
    ),
    (
        "two-content-lengths",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        errors.BadRequest,
    ),
    ("negative-cl", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", errors.BadRequest),
    (
        "te-gzip",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\nabc",
        errors.BadRequest,
    ),
    (
        "te-gzip-chunked",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        errors.NotImplementedByServer,
    ),
    (
        "te-chunked-twice",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n",
        errors.BadRequest,
    ),
    (
        "bad-chunk-size",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n",
        errors.BadRequest,
    ),
    (
        "huge-chunk-size",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
        errors.PayloadTooLarge,
    ),
    (
        "chunk-too-long",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
        errors.BadRequest,
    ),
    (
        "declared-body-too-large",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\n\r\n",
        errors.PayloadTooLarge,
    ),
    (
        "chunked-body-too-large",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n"
        + b"x" * 101
        + b"\r\n",
        errors.PayloadTooLarge,
    ),
    (
        "too-many-headers",
        b"GET / HTTP/1.1\r\nHost: t\r\n"
        + b"".join(b"X-%d: 1\r\n" % i for i in range(11))
        + b"\r\n",
        errors.HeadersTooLarge,
    ),
    (
        "header-too-large",
        b"GET / HTTP/1.1\r\nHost: t\r\nX: " + b"a" * 2000 + b"\r\n\r\n",
        errors.HeadersTooLarge,
    ),
    (
        "url-too-large",
        b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: t\r\n\r\n",
        errors.URITooLong,
    ),
    (
        "expect-other",
        b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\n",
        errors.ExpectationFailed,
    ),
]


@pytest.mark.parametrize("split", [None, 3])
@pytest.mark.parametrize("case", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_requests(case: tuple[Any, ...], split: int | None) -> None:
    _, raw, error = case
    with pytest.raises(error) as info:
        parse_all(raw, split=split)
    assert info.value.status == error.status


def test_unterminated_header_is_bounded_even_unparsed() -> None:
    """A header that never ends is refused once it passes the limit, fed in small pieces."""
    parser = RequestParser(**LIMITS)
    parser.feed(b"GET / HTTP/1.1\r\nHost: t\r\nX: ")
    with pytest.raises(errors.HeadersTooLarge):
        for _ in range(100):
            parser.feed(b"a" * 100)


def test_pipelined_requests_come_out_in_order() -> None:
    raw = (
        b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\n"
        b"POST /2 HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nok"
        b"GET /3 HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    for split in (None, 1, 5):
        requests = parse_all(raw, split=split)
        assert [r.target for r in requests] == [b"/1", b"/2", b"/3"]
        assert bytes(requests[1].body) == b"ok"


def test_expect_continue_is_due_once_until_the_body_arrives() -> None:
    parser = RequestParser(**LIMITS)
    parser.feed(b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
    assert parser.take_continue() is True
    assert parser.take_continue() is False
    assert parser.next_request() is None
    parser.feed(b"abc")
    request = parser.next_request()
    assert request is not None and bytes(request.body) == b"abc"


def test_expect_continue_not_due_when_body_came_with_head() -> None:
    parser = RequestParser(**LIMITS)
    parser.feed(
        b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc"
    )
    assert parser.take_continue() is False
    assert parser.next_request() is not None


def test_in_head_tracks_a_partial_request() -> None:
    parser = RequestParser(**LIMITS)
    assert not parser.in_head
    parser.feed(b"GET / HT")
    assert parser.in_head
    parser.feed(b"TP/1.1\r\nHost: t\r\n\r\n")
    assert not parser.in_head
    assert parser.next_request() is not None


@pytest.mark.parametrize("split", [None, 1000])
def test_content_length_with_5000_leading_zeros(split: int | None) -> None:
    """Past Python's 4300-digit int limit: still its number (RFC 9110 §8.6), or 413 if large."""
    zeros = b"0" * 5000
    raw = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: " + zeros + b"2\r\n\r\nok"
    (request,) = parse_all(raw, split=split, max_header_bytes=8192)
    assert bytes(request.body) == b"ok"
    with pytest.raises(errors.PayloadTooLarge):
        parse_all(raw.replace(zeros, zeros + b"1" * 10), split=split, max_header_bytes=8192)


def test_upgrade_is_ignored_and_its_body_kept() -> None:
    """RFC 9110 §7.8: Upgrade ignored; the body is read, the next request parsed (llhttp alone
    would skip the body and stop)."""
    for split in (None, 1, 5):
        (first, second) = parse_all(
            b"POST /u HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
            b"Content-Length: 5\r\n\r\nhello"
            b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n",
            split=split,
        )
        assert bytes(first.body) == b"hello" and not first.upgrade and first.keep_alive
        assert second.target == b"/next"


def test_connect_is_served_then_the_rest_ignored() -> None:
    parser = RequestParser(**LIMITS)
    parser.feed(b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n\x16\x03\x01")
    request = parser.next_request()
    assert request is not None and request.upgrade and parser.closed
    parser.feed(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert parser.next_request() is None


def test_bytes_after_a_closing_request_are_not_read() -> None:
    parser = RequestParser(**LIMITS)
    parser.feed(b"GET /1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /2 HTTP/1.1\r\n\r\n")
    request = parser.next_request()
    assert request is not None and not request.keep_alive
    assert parser.next_request() is None and parser.closed


def test_state_follows_the_request() -> None:
    """between_requests, in_head, in_body: what the connection's deadlines are chosen by."""
    parser = RequestParser(**LIMITS)
    assert parser.between_requests and not parser.in_head and not parser.in_body
    parser.feed(b"\r\n")  # an empty line starts the head's clock: it is not idleness
    assert parser.in_head and not parser.between_requests
    parser.feed(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nab")
    assert parser.in_body and not parser.in_head
    parser.feed(b"cd")
    assert parser.between_requests and parser.next_request() is not None


def test_requests_before_garbage_in_one_feed_are_served_first() -> None:
    parser = RequestParser(**LIMITS)
    parser.feed(b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\n\x00GARBAGE")
    first = parser.next_request()
    assert first is not None and first.target == b"/1"
    with pytest.raises(errors.BadRequest):
        parser.next_request()
    with pytest.raises(errors.BadRequest):
        parser.feed(b"GET /2 HTTP/1.1\r\nHost: t\r\n\r\n")


GUNICORN_CORPUS = os.environ.get("SERVER_GUNICORN_CORPUS", "")


def load_corpus_file(path: Path) -> bytes:
    """gunicorn's tests/treq.py encoding: lines joined, ``\\r\\n``, ``\\0``, ``\\n``, ``\\t``
    and ``\\xNN`` escapes."""
    data = path.read_bytes().replace(b"\n", b"").replace(b"\\r\\n", b"\r\n")
    data = data.replace(b"\\0", b"\0").replace(b"\\n", b"\n").replace(b"\\t", b"\t")
    return re.sub(rb"\\x([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), data)


def corpus_outcome(data: bytes, split: int) -> tuple[list[tuple[str, bytes, bytes]], int | None]:
    parser = RequestParser(max_header_bytes=65536, max_headers=200, max_body=10 * 1024 * 1024)
    got: list[tuple[str, bytes, bytes]] = []
    try:
        for start in range(0, len(data), split):
            parser.feed(data[start : start + split])
            while (request := parser.next_request()) is not None:
                got.append((request.method, request.target, bytes(request.body)))
    except errors.HTTPError as exc:
        return got, exc.status
    return got, None


@pytest.mark.skipif(not GUNICORN_CORPUS, reason="SERVER_GUNICORN_CORPUS=<gunicorn>/tests/requests")
def test_gunicorn_request_corpus_whole_and_bytewise_agree() -> None:
    """gunicorn's request corpus (valid and invalid files; read from a checkout, never copied
    here): every file ends in requests or an HTTP refusal, never another exception, and the
    same way whether it arrives whole or byte by byte."""
    files = sorted(Path(GUNICORN_CORPUS).glob("*/*.http"))
    assert files, f"no .http files under {GUNICORN_CORPUS}"
    differ = []
    for path in files:
        data = load_corpus_file(path)
        if corpus_outcome(data, len(data) or 1) != corpus_outcome(data, 1):
            differ.append(path.name)
    assert not differ, f"whole and byte-by-byte differ for {differ}"
