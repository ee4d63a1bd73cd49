"""One unit test per HTTP/1.1 request rule of ``server.http11.RULES`` (RFC 9112, RFC 9110),
each over a table of raw requests, through the sans-IO parser and environ; then the refusals
again against a live server with one core, which must answer each with its status and
``Connection: close`` and go on serving.

Each table row: (id, raw request, expected). ``expected`` is an HTTPError class for a refusal,
or a dict of environ keys for an accepted request. The cases are our own; the choices were
checked against h11's, llhttp's and waitress's tests (see server/http11.py).
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any

import pytest

from server import errors, http11
from server.parser import RequestParser
from server.testing import ServerProcess
from server.wsgi import base_environ, build_environ
from tests.server.client import Client, get

Case = tuple[str, bytes, Any]
H = b"Host: t\r\n"
CHUNKED = b"Transfer-Encoding: chunked\r\n"


def outcome(raw: bytes, split: int | None = None) -> Any:
    """The environ of the one request in ``raw``, or the HTTPError class it was refused with."""
    parser = RequestParser(max_header_bytes=4096, max_headers=20, max_body=1000)
    pieces = [raw] if split is None else [raw[i : i + split] for i in range(0, len(raw), split)]
    try:
        for piece in pieces:
            parser.feed(piece)
        request = parser.next_request()
    except errors.HTTPError as exc:
        return type(exc)
    assert request is not None, f"incomplete: {raw!r}"
    return build_environ(request, base_environ("127.0.0.1", 80), ("10.0.0.1", 5555))


def check(case: Case) -> None:
    _, raw, expected = case
    for split in (None, 1):  # whole, and byte by byte: the same verdict
        got = outcome(raw, split)
        if isinstance(expected, dict):
            assert isinstance(got, dict), f"refused with {got} (split {split})"
            assert {k: got.get(k) for k in expected} == expected, f"split {split}"
        else:
            assert got is expected, f"expected {expected.__name__}, got {got} (split {split})"


def field(line: bytes) -> bytes:
    return b"GET / HTTP/1.1\r\n" + H + line + b"\r\n\r\n"


def ids(table: list[Case]) -> list[str]:
    return [c[0] for c in table]


ORIGIN = [  # RFC 9112 §3.2.1; RFC 9110 §4.2.5: the fragment is not sent on, never in PATH_INFO
    (
        "path-query",
        b"GET /a/b?x=1&y HTTP/1.1\r\n" + H + b"\r\n",
        {"PATH_INFO": "/a/b", "QUERY_STRING": "x=1&y"},
    ),
    (
        "fragment",
        b"GET /a#frag HTTP/1.1\r\n" + H + b"\r\n",
        {"PATH_INFO": "/a", "QUERY_STRING": ""},
    ),
    (
        "query-fragment",
        b"GET /a?q=1#f?g HTTP/1.1\r\n" + H + b"\r\n",
        {"PATH_INFO": "/a", "QUERY_STRING": "q=1"},
    ),
    ("encoded-hash", b"GET /a%23b HTTP/1.1\r\n" + H + b"\r\n", {"PATH_INFO": "/a#b"}),
    ("empty-query", b"GET /a? HTTP/1.1\r\n" + H + b"\r\n", {"PATH_INFO": "/a", "QUERY_STRING": ""}),
]


@pytest.mark.parametrize("case", ORIGIN, ids=ids(ORIGIN))
def test_origin_form(case: Case) -> None:
    check(case)


ABSOLUTE = [  # RFC 9112 §3.2.2: accepted; the target's authority replaces Host
    (
        "http",
        b"GET http://example.com:81/p?q#f HTTP/1.1\r\nHost: other\r\n\r\n",
        {"PATH_INFO": "/p", "QUERY_STRING": "q", "HTTP_HOST": "example.com:81"},
    ),
    (
        "https-upper",
        b"GET HTTPS://example.com/ HTTP/1.1\r\n" + H + b"\r\n",
        {"PATH_INFO": "/", "HTTP_HOST": "example.com"},
    ),
    (
        "no-path",
        b"GET http://example.com HTTP/1.1\r\n" + H + b"\r\n",
        {"PATH_INFO": "/", "HTTP_HOST": "example.com"},
    ),
    (
        "query-no-path",
        b"GET http://example.com?x=1 HTTP/1.1\r\n" + H + b"\r\n",
        {"PATH_INFO": "/", "QUERY_STRING": "x=1"},
    ),
    (
        "ipv6",
        b"GET http://[::1]:8080/p HTTP/1.1\r\n" + H + b"\r\n",
        {"PATH_INFO": "/p", "HTTP_HOST": "[::1]:8080"},
    ),
]


@pytest.mark.parametrize("case", ABSOLUTE, ids=ids(ABSOLUTE))
def test_absolute_form(case: Case) -> None:
    check(case)


ABSOLUTE_REFUSED = [  # RFC 9112 §3.2.2 (http/https URIs), RFC 9110 §4.2.4 (userinfo is an error)
    ("ftp", b"GET ftp://example.com/p HTTP/1.1\r\n" + H + b"\r\n", errors.BadRequest),
    ("userinfo", b"GET http://user:pw@example.com/p HTTP/1.1\r\n" + H + b"\r\n", errors.BadRequest),
    ("empty-authority", b"GET http:///p HTTP/1.1\r\n" + H + b"\r\n", errors.BadRequest),
]


@pytest.mark.parametrize("case", ABSOLUTE_REFUSED, ids=ids(ABSOLUTE_REFUSED))
def test_absolute_form_refused(case: Case) -> None:
    check(case)


AUTHORITY = [  # RFC 9112 §3.2.3: authority-form only with CONNECT
    ("get", b"GET example.com:80 HTTP/1.1\r\n" + H + b"\r\n", errors.BadRequest),
    ("options", b"OPTIONS example.com:80 HTTP/1.1\r\n" + H + b"\r\n", errors.BadRequest),
]


@pytest.mark.parametrize("case", AUTHORITY, ids=ids(AUTHORITY))
def test_authority_form_only_with_connect(case: Case) -> None:
    check(case)


CONNECT = [  # RFC 9112 §3.2.3: CONNECT uses host:port; a valid one goes to the application
    ("origin-form", b"CONNECT /x HTTP/1.1\r\n" + H + b"\r\n", errors.BadRequest),
    ("no-port", b"CONNECT example.com HTTP/1.1\r\n" + H + b"\r\n", errors.BadRequest),
    ("empty-port", b"CONNECT example.com: HTTP/1.1\r\n" + H + b"\r\n", errors.BadRequest),
    ("port-0", b"CONNECT example.com:0 HTTP/1.1\r\n" + H + b"\r\n", errors.BadRequest),
    ("port-too-big", b"CONNECT example.com:65536 HTTP/1.1\r\n" + H + b"\r\n", errors.BadRequest),
    (
        "valid",
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        {
            "REQUEST_METHOD": "CONNECT",
            "PATH_INFO": "example.com:443",
            "HTTP_HOST": "example.com:443",
        },
    ),
]


@pytest.mark.parametrize("case", CONNECT, ids=ids(CONNECT))
def test_connect(case: Case) -> None:
    check(case)


ASTERISK = [  # RFC 9112 §3.2.4: only OPTIONS
    (
        "options",
        b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n",
        {"REQUEST_METHOD": "OPTIONS", "PATH_INFO": "*"},
    ),
    ("get", b"GET * HTTP/1.1\r\n" + H + b"\r\n", errors.BadRequest),
    ("post", b"POST * HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n\r\n", errors.BadRequest),
]


@pytest.mark.parametrize("case", ASTERISK, ids=ids(ASTERISK))
def test_asterisk_form(case: Case) -> None:
    check(case)


TARGET_CHARS = [  # RFC 9112 §3.2, RFC 3986: no CTL, space or non-ASCII in the target
    ("space", b"GET /a b HTTP/1.1\r\n" + H + b"\r\n", errors.BadRequest),
    ("ctl", b"GET /a\x01b HTTP/1.1\r\n" + H + b"\r\n", errors.BadRequest),
    ("non-ascii", b"GET /caf\xc3\xa9 HTTP/1.1\r\n" + H + b"\r\n", errors.BadRequest),
    ("relative", b"GET a/b HTTP/1.1\r\n" + H + b"\r\n", errors.BadRequest),
]


@pytest.mark.parametrize("case", TARGET_CHARS, ids=ids(TARGET_CHARS))
def test_target_characters(case: Case) -> None:
    check(case)


def test_target_too_long() -> None:
    """RFC 9112 §3: a request-target longer than the server parses MUST get 414."""
    check(("long", b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n" + H + b"\r\n", errors.URITooLong))
    check(("at-limit", b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\n" + H + b"\r\n", {}))


HOST = [  # RFC 9112 §3.2: HTTP/1.1 needs exactly one Host with a valid value
    ("missing-11", b"GET / HTTP/1.1\r\n\r\n", errors.BadRequest),
    ("two", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", errors.BadRequest),
    ("two-same", b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", errors.BadRequest),
    ("invalid", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", errors.BadRequest),
    ("userinfo", b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", errors.BadRequest),
    ("empty-allowed", b"GET / HTTP/1.1\r\nHost:\r\n\r\n", {"HTTP_HOST": ""}),
    ("port", b"GET / HTTP/1.1\r\nHost: a.example:8080\r\n\r\n", {"HTTP_HOST": "a.example:8080"}),
    ("missing-10-ok", b"GET / HTTP/1.0\r\n\r\n", {"SERVER_PROTOCOL": "HTTP/1.0"}),
    ("absolute-still-needs-host", b"GET http://a/ HTTP/1.1\r\n\r\n", errors.BadRequest),
]


@pytest.mark.parametrize("case", HOST, ids=ids(HOST))
def test_host_rules(case: Case) -> None:
    check(case)


SINGLETONS = [  # RFC 9110 §5.3: a singleton field sent twice (Host: test_host_rules)
    ("content-type-twice", field(b"Content-Type: a/b\r\nContent-Type: c/d"), errors.BadRequest),
    ("content-type-once", field(b"Content-Type: a/b"), {"CONTENT_TYPE": "a/b"}),
    ("other-lists-merge", field(b"Accept: a/b\r\nAccept: c/d"), {"HTTP_ACCEPT": "a/b, c/d"}),
]


@pytest.mark.parametrize("case", SINGLETONS, ids=ids(SINGLETONS))
def test_duplicate_singleton_fields(case: Case) -> None:
    check(case)


METHODS = [  # RFC 9110 §9.1: methods are case-sensitive tokens; any token goes to the app
    ("custom", b"PURGEX / HTTP/1.1\r\n" + H + b"\r\n", {"REQUEST_METHOD": "PURGEX"}),
    ("lowercase", b"get / HTTP/1.1\r\n" + H + b"\r\n", {"REQUEST_METHOD": "get"}),
    ("token-chars", b"-BLARGH / HTTP/1.1\r\n" + H + b"\r\n", {"REQUEST_METHOD": "-BLARGH"}),
    (
        "custom-with-body",
        b"X!#$ /p HTTP/1.1\r\n" + H + b"Content-Length: 2\r\n\r\nok",
        {"REQUEST_METHOD": "X!#$", "CONTENT_LENGTH": "2", "PATH_INFO": "/p"},
    ),
    ("not-a-token", b"G(T / HTTP/1.1\r\n" + H + b"\r\n", errors.BadRequest),
    ("binary", b"\x16\x03\x01\x00\xa5\x01\x00", errors.BadRequest),
    (
        "known",
        b"PATCH / HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n\r\n",
        {"REQUEST_METHOD": "PATCH"},
    ),
]


@pytest.mark.parametrize("case", METHODS, ids=ids(METHODS))
def test_any_token_method(case: Case) -> None:
    check(case)


def test_any_token_method_in_a_pipeline() -> None:
    """A later request of a connection is read the same way as the first."""
    parser = RequestParser(max_header_bytes=4096, max_headers=20, max_body=1000)
    parser.feed(b"GET / HTTP/1.1\r\n" + H + b"\r\nPURGEX /2 HTTP/1.1\r\n" + H + b"\r\n")
    first, second = parser.next_request(), parser.next_request()
    assert first is not None and second is not None and second.method == "PURGEX"


REQUEST_LINE = [  # RFC 9112 §2.2, §3: only CRLF before the line; one SP between its parts
    ("cr-before", b"\rGET / HTTP/1.1\r\n" + H + b"\r\n", errors.BadRequest),
    ("lf-before", b"\nGET / HTTP/1.1\r\n" + H + b"\r\n", errors.BadRequest),
    ("crcr-before", b"\r\r\nGET / HTTP/1.1\r\n" + H + b"\r\n", errors.BadRequest),
    ("two-spaces", b"GET  / HTTP/1.1\r\n" + H + b"\r\n", errors.BadRequest),
    ("tab", b"GET\t/ HTTP/1.1\r\n" + H + b"\r\n", errors.BadRequest),
    ("space-after-version", b"GET / HTTP/1.1 \r\n" + H + b"\r\n", errors.BadRequest),
    ("leading-space", b" GET / HTTP/1.1\r\n" + H + b"\r\n", errors.BadRequest),
    ("lowercase-http", b"GET / http/1.1\r\n" + H + b"\r\n", errors.BadRequest),
    ("http09", b"GET /\r\n\r\n", errors.VersionNotSupported),
]


@pytest.mark.parametrize("case", REQUEST_LINE, ids=ids(REQUEST_LINE))
def test_request_line_strict(case: Case) -> None:
    check(case)


def test_request_line_strict_in_a_pipeline() -> None:
    """A later request's line is held to the same grammar (we frame every message)."""
    for split in (None, 1):
        parser = RequestParser(max_header_bytes=4096, max_headers=20, max_body=1000)
        raw = b"GET /1 HTTP/1.1\r\n" + H + b"\r\n\r\n\rGET /2 HTTP/1.1\r\n" + H + b"\r\n"
        got = []
        with pytest.raises(errors.BadRequest):
            for i in range(0, len(raw), split or len(raw)):
                parser.feed(raw[i : i + (split or len(raw))])
                while (request := parser.next_request()) is not None:
                    got.append(request.target)
        assert got == [b"/1"], f"split {split}"


def test_request_line_refused_before_it_ends() -> None:
    """A line that can no longer become valid is refused at once, not at the head's end."""
    for start in (b"\rG", b"G(", b"GET  ", b"GET / HTTP/1.1 ", b"GET / HTTX"):
        parser = RequestParser(max_header_bytes=4096, max_headers=20, max_body=1000)
        with pytest.raises(errors.BadRequest):
            parser.feed(start)


VERSIONS = [  # RFC 9110 §2.5, §6.2: 1.x (x > 1) answered as 1.1; another major 505
    ("1.1", b"GET / HTTP/1.1\r\n" + H + b"\r\n", {"SERVER_PROTOCOL": "HTTP/1.1"}),
    ("1.2", b"GET / HTTP/1.2\r\n" + H + b"\r\n", {"SERVER_PROTOCOL": "HTTP/1.1"}),
    ("2.0", b"GET / HTTP/2.0\r\n" + H + b"\r\n", errors.VersionNotSupported),
    ("0.9-with-version", b"GET / HTTP/0.9\r\n\r\n", errors.VersionNotSupported),
    ("not-digits", b"GET / HTTP/1.x\r\n" + H + b"\r\n", errors.BadRequest),
]


@pytest.mark.parametrize("case", VERSIONS, ids=ids(VERSIONS))
def test_versions(case: Case) -> None:
    check(case)


def test_leading_empty_lines() -> None:
    """RFC 9112 §2.2: at least one empty line before the request-line is ignored."""
    check(("crlf", b"\r\n\r\nGET /x HTTP/1.1\r\n" + H + b"\r\n", {"PATH_INFO": "/x"}))


def chunked(*chunks: bytes) -> bytes:
    return b"POST / HTTP/1.1\r\n" + H + CHUNKED + b"\r\n" + b"".join(chunks) + b"0\r\n\r\n"


CHUNK_EXT = [  # RFC 9112 §7.1.1: chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] )
    ("name", chunked(b"3;ext\r\nabc\r\n"), {"CONTENT_LENGTH": "3"}),
    ("name-value", chunked(b"3;a=b;c=d\r\nabc\r\n", b"1;z=1\r\nd\r\n"), {"CONTENT_LENGTH": "4"}),
    ("quoted", chunked(b'3;a="x y"\r\nabc\r\n'), {"CONTENT_LENGTH": "3"}),
    ("quoted-pair", chunked(b'3;a="x\\"y"\r\nabc\r\n'), {"CONTENT_LENGTH": "3"}),
    ("bws", chunked(b"5; some; parameters=stuff\r\nhello\r\n"), {"CONTENT_LENGTH": "5"}),
    ("bws-around-eq", chunked(b"3 ; a = b\r\nabc\r\n"), {"CONTENT_LENGTH": "3"}),
    ("last-chunk-ext", chunked(b"3\r\nabc\r\n").replace(b"0\r\n\r\n", b"0;x\r\n\r\n"), {}),
    ("leading-zeros", chunked(b"0003\r\nabc\r\n"), {"CONTENT_LENGTH": "3"}),
    ("no-name", chunked(b"3;\r\nabc\r\n"), errors.BadRequest),
    ("no-name-value", chunked(b"3;=x\r\nabc\r\n"), errors.BadRequest),
    ("ctl-in-ext", chunked(b"3;\x01\r\nabc\r\n"), errors.BadRequest),
    ("space-in-name", chunked(b"3;a b\r\nabc\r\n"), errors.BadRequest),
    ("unterminated-quote", chunked(b'3;a="x\r\nabc\r\n'), errors.BadRequest),
    ("trailing-space", chunked(b"3 \r\nabc\r\n"), errors.BadRequest),
    ("no-size", chunked(b";a\r\nabc\r\n"), errors.BadRequest),
]


@pytest.mark.parametrize("case", CHUNK_EXT, ids=ids(CHUNK_EXT))
def test_chunk_extensions(case: Case) -> None:
    check(case)


def test_chunk_extensions_bounded() -> None:
    """One chunk-size line is at most CHUNK_LINE_MAX bytes; a request's extensions at most
    --max-header-bytes (4096 here), whether or not a line ever ends."""
    long_value = b"3;a=" + b"v" * 5000 + b"\r\nabc\r\n"
    check(("long-line", chunked(long_value), errors.BadRequest))
    many = b"".join(b"1;e=" + b"v" * 500 + b"\r\nx\r\n" for _ in range(10))
    check(("many-lines", chunked(many), errors.BadRequest))
    check(("under", chunked(b"".join(b"1;e=vvv\r\nx\r\n" for _ in range(10))), {}))
    endless = RequestParser(max_header_bytes=4096, max_headers=20, max_body=1000)
    endless.feed(b"POST / HTTP/1.1\r\n" + H + CHUNKED + b"\r\n3;a=")
    with pytest.raises(errors.BadRequest):
        for _ in range(100):
            endless.feed(b"v" * 100)


def te(value: bytes, version: bytes = b"1.1", extra: bytes = b"") -> bytes:
    return (
        b"POST / HTTP/"
        + version
        + b"\r\n"
        + H
        + b"Transfer-Encoding: "
        + value
        + b"\r\n"
        + extra
        + b"\r\n3\r\nabc\r\n0\r\n\r\n"
    )


TE_FINAL = [  # RFC 9112 §6.3 (4): a request whose final coding is not chunked is 400
    ("chunked", te(b"chunked"), {"CONTENT_LENGTH": "3"}),
    ("Chunked-case", te(b"Chunked"), {"CONTENT_LENGTH": "3"}),
    ("chunked-gzip", te(b"chunked, gzip"), errors.BadRequest),
    ("gzip", te(b"gzip"), errors.BadRequest),
    ("identity-alone", te(b"identity"), errors.BadRequest),
    ("chunked-identity", te(b"chunked, identity"), errors.BadRequest),
    ("empty", te(b""), errors.BadRequest),
]


@pytest.mark.parametrize("case", TE_FINAL, ids=ids(TE_FINAL))
def test_transfer_encoding_final_chunked(case: Case) -> None:
    check(case)


TE_IDENTITY = [  # RFC 7230 A.2 removed identity; before a final chunked it is a no-op
    ("identity-chunked", te(b"identity, chunked"), {"CONTENT_LENGTH": "3"}),
    (
        "two-lines",
        te(b"identity", extra=b"Transfer-Encoding: chunked\r\n"),
        {"CONTENT_LENGTH": "3"},
    ),
]


@pytest.mark.parametrize("case", TE_IDENTITY, ids=ids(TE_IDENTITY))
def test_transfer_encoding_identity(case: Case) -> None:
    check(case)


TE_UNKNOWN = [  # RFC 9112 §6.1: a coding the server does not understand: 501
    ("gzip-chunked", te(b"gzip, chunked"), errors.NotImplementedByServer),
    (
        "two-lines",
        te(b"deflate", extra=b"Transfer-Encoding: chunked\r\n"),
        errors.NotImplementedByServer,
    ),
    ("unknown-token", te(b"x-custom, chunked"), errors.NotImplementedByServer),
]


@pytest.mark.parametrize("case", TE_UNKNOWN, ids=ids(TE_UNKNOWN))
def test_transfer_encoding_unknown(case: Case) -> None:
    check(case)


TE_TWICE = [  # RFC 9112 §6.1, §7: chunked is applied at most once
    ("one-line", te(b"chunked, chunked"), errors.BadRequest),
    ("two-lines", te(b"chunked", extra=b"Transfer-Encoding: chunked\r\n"), errors.BadRequest),
]


@pytest.mark.parametrize("case", TE_TWICE, ids=ids(TE_TWICE))
def test_transfer_encoding_chunked_twice(case: Case) -> None:
    check(case)


def test_transfer_encoding_http10() -> None:
    """RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing: 400."""
    check(("chunked-1.0", te(b"chunked", version=b"1.0"), errors.BadRequest))
    check(
        (
            "chunked-1.0-with-cl",
            te(b"chunked", version=b"1.0", extra=b"Content-Length: 3\r\n"),
            errors.BadRequest,
        )
    )


CL_TE = [  # RFC 9112 §6.1, §6.3 (3): both framings in one request (smuggling): 400
    (
        "cl-first",
        b"POST / HTTP/1.1\r\n"
        + H
        + b"Content-Length: 3\r\n"
        + CHUNKED
        + b"\r\n3\r\nabc\r\n0\r\n\r\n",
        errors.BadRequest,
    ),
    ("te-first", te(b"chunked", extra=b"Content-Length: 3\r\n"), errors.BadRequest),
    (
        "identity-with-cl",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\nContent-Length: 3\r\n\r\nabc",
        errors.BadRequest,
    ),
]


@pytest.mark.parametrize("case", CL_TE, ids=ids(CL_TE))
def test_content_length_with_transfer_encoding(case: Case) -> None:
    check(case)


def cl(*values: bytes) -> bytes:
    return (
        b"POST / HTTP/1.1\r\n"
        + H
        + b"".join(b"Content-Length: " + v + b"\r\n" for v in values)
        + b"\r\nabcd"
    )


CL_DUP = [  # RFC 9110 §8.6 (MAY reject), RFC 9112 §6.3 (5): we refuse every duplicate
    ("different", cl(b"3", b"4"), errors.BadRequest),
    ("same", cl(b"4", b"4"), errors.BadRequest),
    ("list-different", cl(b"3, 4"), errors.BadRequest),
    ("list-same", cl(b"4, 4"), errors.BadRequest),
]


@pytest.mark.parametrize("case", CL_DUP, ids=ids(CL_DUP))
def test_content_length_duplicates(case: Case) -> None:
    check(case)


CL_SYNTAX = [  # RFC 9110 §8.6: Content-Length = 1*DIGIT
    ("plain", cl(b"4"), {"CONTENT_LENGTH": "4"}),
    ("leading-zeros", cl(b"0004"), {"CONTENT_LENGTH": "4"}),
    ("many-leading-zeros", cl(b"0" * 3000 + b"4"), {"CONTENT_LENGTH": "4"}),
    ("plus", cl(b"+4"), errors.BadRequest),
    ("negative", cl(b"-4"), errors.BadRequest),
    ("hex", cl(b"0x4"), errors.BadRequest),
    ("empty", cl(b""), errors.BadRequest),
]


@pytest.mark.parametrize("case", CL_SYNTAX, ids=ids(CL_SYNTAX))
def test_content_length_syntax(case: Case) -> None:
    check(case)


FIELD_NAMES = [  # RFC 9110 §5.1 (token), RFC 9112 §5.1 (no whitespace before the colon: 400)
    ("space-before-colon", field(b"X-A : 1"), errors.BadRequest),
    ("space-inside", field(b"X A: 1"), errors.BadRequest),
    ("empty", field(b": 1"), errors.BadRequest),
    ("separator", field(b"X(A): 1"), errors.BadRequest),
    ("no-colon", field(b"X-A 1"), errors.BadRequest),
    ("token-chars", field(b"X-A!#$%&'*+.^_`|~: 1"), {}),
]


@pytest.mark.parametrize("case", FIELD_NAMES, ids=ids(FIELD_NAMES))
def test_field_names(case: Case) -> None:
    check(case)


FIELD_VALUES = [  # RFC 9110 §5.5: VCHAR, SP, HTAB, obs-text; no CTL; OWS around it trimmed
    ("ows-trimmed", field(b"X-A: \t a b \t "), {"HTTP_X_A": "a b"}),
    ("htab-inside", field(b"X-A: a\tb"), {"HTTP_X_A": "a\tb"}),
    ("obs-text", field(b"X-A: caf\xe9"), {"HTTP_X_A": "caf\xe9"}),
    ("empty", field(b"X-A:"), {"HTTP_X_A": ""}),
    ("nul", field(b"X-A: a\x00b"), errors.BadRequest),
    ("ctl", field(b"X-A: a\x01b"), errors.BadRequest),
    ("del", field(b"X-A: a\x7fb"), errors.BadRequest),
    ("bare-cr", field(b"X-A: a\rb"), errors.BadRequest),
]


@pytest.mark.parametrize("case", FIELD_VALUES, ids=ids(FIELD_VALUES))
def test_field_values(case: Case) -> None:
    check(case)


OBS_FOLD = [  # RFC 9112 §5.2: a server MUST reject obs-fold (400) or replace it; we reject
    ("space", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n", errors.BadRequest),
    ("tab", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n\tb\r\n\r\n", errors.BadRequest),
    ("first-line", b"GET / HTTP/1.1\r\n Host: t\r\n\r\n", errors.BadRequest),
]


@pytest.mark.parametrize("case", OBS_FOLD, ids=ids(OBS_FOLD))
def test_obs_fold(case: Case) -> None:
    check(case)


def trailer(line: bytes) -> bytes:
    return b"POST / HTTP/1.1\r\n" + H + CHUNKED + b"\r\n3\r\nabc\r\n0\r\n" + line + b"\r\n\r\n"


FORBIDDEN_TRAILERS = [  # RFC 9110 §6.5.1: framing and connection fields (smuggling attempts)
    (name.decode(), trailer(name + b": x"), errors.BadRequest)
    for name in (
        b"Host",
        b"Content-Length",
        b"Transfer-Encoding",
        b"Trailer",
        b"TE",
        b"Connection",
        b"Upgrade",
        b"HOST",
    )
]


@pytest.mark.parametrize("case", FORBIDDEN_TRAILERS, ids=ids(FORBIDDEN_TRAILERS))
def test_forbidden_trailer_fields(case: Case) -> None:
    check(case)


ALLOWED_TRAILERS = [  # RFC 9112 §7.1.2, RFC 9110 §6.5.2: accepted, never merged into headers
    ("checksum", trailer(b"X-Checksum: 1"), {"CONTENT_LENGTH": "3", "HTTP_X_CHECKSUM": None}),
    ("server-timing", trailer(b"Server-Timing: a"), {"CONTENT_LENGTH": "3"}),
    (
        "vary-content-type",  # gunicorn's corpus, valid/012
        trailer(b"Vary: *\r\nContent-Type: text/plain"),
        {"CONTENT_LENGTH": "3", "CONTENT_TYPE": None, "HTTP_VARY": None},
    ),
    ("authorization", trailer(b"Authorization: x"), {"HTTP_AUTHORIZATION": None}),
    ("empty-value", trailer(b"X-E:"), {"CONTENT_LENGTH": "3"}),
    ("bad-name", trailer(b"X A: 1"), errors.BadRequest),
    ("space-before-colon", trailer(b"X-A : 1"), errors.BadRequest),
    ("obs-fold", trailer(b"X-A: 1\r\n 2"), errors.BadRequest),
    ("nul", trailer(b"X-A: a\x00b"), errors.BadRequest),
    ("bare-cr", trailer(b"X-A: a\rb"), errors.BadRequest),
]


@pytest.mark.parametrize("case", ALLOWED_TRAILERS, ids=ids(ALLOWED_TRAILERS))
def test_allowed_trailer_fields(case: Case) -> None:
    check(case)


def test_trailer_section_bounded() -> None:
    """A trailer section counts against --max-headers (with the headers) and against
    --max-header-bytes, also while it never ends (no unbounded buffer)."""
    many = b"".join(b"X-%d: v\r\n" % i for i in range(25))
    check(("many", trailer(many.rstrip(b"\r\n")), errors.HeadersTooLarge))
    check(("long", trailer(b"X-L: " + b"v" * 5000), errors.HeadersTooLarge))
    endless = RequestParser(max_header_bytes=4096, max_headers=20, max_body=1000)
    endless.feed(b"POST / HTTP/1.1\r\n" + H + CHUNKED + b"\r\n3\r\nabc\r\n0\r\nX-T: ")
    with pytest.raises(errors.HeadersTooLarge):
        for _ in range(100):
            endless.feed(b"v" * 100)


UPGRADE = [  # RFC 9110 §7.8: a server MAY ignore Upgrade; HTTP/1.0 must
    (
        "with-body",
        b"POST /u HTTP/1.1\r\n" + H + b"Connection: upgrade\r\nUpgrade: websocket\r\n"
        b"Content-Length: 5\r\n\r\nhello",
        {"PATH_INFO": "/u", "CONTENT_LENGTH": "5", "HTTP_UPGRADE": "websocket"},
    ),
    (
        "chunked-body",
        b"POST /u HTTP/1.1\r\n"
        + H
        + b"Connection: upgrade\r\nUpgrade: h2c\r\n"
        + CHUNKED
        + b"\r\n2\r\nhi\r\n0\r\n\r\n",
        {"CONTENT_LENGTH": "2"},
    ),
    (
        "http10",
        b"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        {"SERVER_PROTOCOL": "HTTP/1.0", "HTTP_UPGRADE": "websocket"},
    ),
]


@pytest.mark.parametrize("case", UPGRADE, ids=ids(UPGRADE))
def test_upgrade_ignored(case: Case) -> None:
    check(case)


def test_bare_lf() -> None:
    """RFC 9112 §2.2: a recipient MAY accept a bare LF; we do not, and say so as soon as it
    arrives (the head would never end, waiting for CRLF CRLF)."""
    check(("bare-lf", b"GET / HTTP/1.1\nHost: t\n\n", errors.BadRequest))
    check(("bare-lf-header", b"GET / HTTP/1.1\r\nHost: t\n\n", errors.BadRequest))
    for start in (b"GET / HTTP/1.1\r\nHost: t\n", b"GET / HTTP/1.1\r\nX: a\rb"):
        parser = RequestParser(max_header_bytes=4096, max_headers=20, max_body=1000)
        with pytest.raises(errors.BadRequest):
            parser.feed(start)


def test_readme_table_is_rendered_from_rules() -> None:
    """server/README.md holds the RULES table exactly as ``python -m server.http11`` renders
    it (one source: edit RULES, then paste the rendering)."""
    readme = (Path(__file__).resolve().parents[2] / "server" / "README.md").read_text()
    begin, end = readme.index(http11.README_BEGIN), readme.index(http11.README_END)
    shown = readme[begin + len(http11.README_BEGIN) : end].strip("\n") + "\n"
    assert shown == http11.render_rules(), "server/README.md: re-render: python -m server.http11"


def test_every_rule_has_its_test() -> None:
    """The RULES table and this module agree both ways: each rule names a test here, and each
    rule test here is named by a rule (the few extra checks below are listed)."""
    here = {name for name, _ in inspect.getmembers(sys.modules[__name__], inspect.isfunction)}
    named = {test for _, _, _, test in http11.RULES}
    missing = sorted(named - here)
    assert not missing, f"rules without their test: {missing}"
    extra_checks = {
        "test_any_token_method_in_a_pipeline",
        "test_request_line_refused_before_it_ends",
        "test_request_line_strict_in_a_pipeline",
        "test_every_rule_has_its_test",
        "test_readme_table_is_rendered_from_rules",
        "test_refusals_live_close_and_keep_the_core",
    }
    unlisted = sorted(n for n in here if n.startswith("test_") and n not in named | extra_checks)
    assert not unlisted, f"tests not named by any rule in http11.RULES: {unlisted}"
    assert all(section.startswith("RFC") for _, section, _, _ in http11.RULES)


# -- live: every refusal is its status with Connection: close, and the core goes on serving ---

LIVE_REFUSALS = [
    *[
        c
        for c in ABSOLUTE_REFUSED
        + AUTHORITY
        + CONNECT
        + HOST
        + SINGLETONS
        + METHODS
        + REQUEST_LINE
        + VERSIONS
        + TE_FINAL
        + TE_UNKNOWN
        + TE_TWICE
        + CL_TE
        + CL_DUP
        + FIELD_NAMES
        + FIELD_VALUES
        + OBS_FOLD
        + CHUNK_EXT
        + FORBIDDEN_TRAILERS[:4]
        if not isinstance(c[2], dict)
    ],
    ("te-http10", te(b"chunked", version=b"1.0"), errors.BadRequest),
    ("asterisk-get", b"GET * HTTP/1.1\r\n" + H + b"\r\n", errors.BadRequest),
    (
        "target-too-long",
        b"GET /" + b"a" * 40000 + b" HTTP/1.1\r\n" + H + b"\r\n",
        errors.URITooLong,
    ),
]


@pytest.mark.integration
def test_refusals_live_close_and_keep_the_core() -> None:
    """One worker with one core (the main thread): each refusal gets its status and
    ``Connection: close``, the server closes, and the same core answers the next request."""
    with ServerProcess("tests.server.apps:router", workers=1, threads=1) as srv:
        wrong = []
        for name, raw, error in LIVE_REFUSALS:
            assert isinstance(error, type) and issubclass(error, errors.HTTPError)
            with Client(srv.host, srv.port, timeout=10) as c:
                c.send(raw)
                response = c.read_response()
                closed = c.closed_by_server(5)
            if (
                response is None
                or response.status != error.status
                or response.header("connection") != "close"
                or not closed
            ):
                wrong.append(
                    (
                        name,
                        response and response.status,
                        response and response.header("connection"),
                        closed,
                    )
                )
        assert not wrong, f"refusals answered wrong (id, status, Connection, closed): {wrong}"
        assert get(srv.host, srv.port, "/hello").status == 200
        assert "Traceback" not in srv.log_text()
