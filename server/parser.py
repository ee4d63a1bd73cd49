"""Sans-IO request parsing: bytes in, complete requests out; llhttp (httptools) reads each head.

One :class:`RequestParser` per connection; it knows nothing of sockets, so it is tested with
tables of bytes. It runs in whichever thread holds the connection at the moment (the worker's
dispatcher while a request arrives, a core while it is answered): one at a time.

The message **framing** is ours, the **head** is llhttp's:

* We split the byte stream into messages ourselves: the strict request-line grammar (only CRLF
  pairs before it, ``method SP request-target SP HTTP-version CRLF``, any token as the
  method), the head's end (the first empty line), then the body by its ``Content-Length`` or
  our chunked decoder (chunk-size with strict extensions, data, trailer section). So we know
  where every message starts and ends, whatever arrives in one piece or byte by byte.
* Each complete head goes to a fresh llhttp parser (strict: every leniency off but the
  version's), which checks the field syntax and refuses what RFC 9112 says to refuse
  (Content-Length with Transfer-Encoding, duplicate Content-Length, obs-fold, bare CR, NUL,
  invalid tokens). A method llhttp does not know (any valid token, RFC 9110 §9.1) is shown to
  it as ``GET``; the request keeps its own. :mod:`server.http11` applies the rest of RFC 9112 /
  RFC 9110 (request-target forms, Host, Transfer-Encoding lists, versions, trailer fields).

Our limits: head (request line, headers) over ``max_header_bytes``: 431 (414 when the
request line alone is over it); more than ``max_headers`` fields (trailers included): 431; a
body over ``max_body``: 413 (at once when declared); a chunk-size line over
:data:`CHUNK_LINE_MAX` or the request's chunk extensions over ``max_header_bytes``: 400; the
trailer section over ``max_header_bytes``: 431. Nothing grows without bound. Every refusal is
an :class:`~server.errors.HTTPError` carrying the status to answer.

``Upgrade`` is ignored (RFC 9110 §7.8: a server MAY): the request and its body are read like
any other, and the connection stays HTTP. ``CONNECT`` goes to the application and the
connection closes after its response (what follows would be tunnel data).

Bodies are buffered whole (up to ``max_body``) before the application runs, as waitress does:
the application never waits on a slow client, and ``wsgi.input`` is a plain in-memory stream.
"""

from __future__ import annotations

import collections
import dataclasses
from enum import Enum

import httptools

from . import errors, http11, lines
from .http11 import Target, TargetForm

CHUNK_LINE_MAX = 4096  # bytes of one chunk-size line, extensions included (RFC 9112 §7.1)
_CHUNK_SIZE_DIGITS_MAX = 16  # hex digits of a chunk size once leading zeros are dropped
_CONTENT_LENGTH_DIGITS_MAX = 19  # decimal digits of a Content-Length, leading zeros dropped


class _State(Enum):
    START = "start"  # between requests, nothing of the next one received
    HEAD = "head"  # the next request began (a CRLF before it counts): its head is incomplete
    LENGTH = "length"  # reading a Content-Length body
    CHUNK_SIZE = "chunk-size"  # a chunk-size line
    CHUNK_DATA = "chunk-data"
    CHUNK_END = "chunk-end"  # the CRLF after a chunk's data
    TRAILERS = "trailers"  # the trailer section after the last chunk
    CLOSED = "closed"  # after a request that ends the connection: the rest is ignored


# The states by plain names: in Python 3.11 an Enum member looked up on its class goes
# through EnumType.__getattr__, about 4x a module global, on every byte fed.
(
    _START,
    _HEAD,
    _LENGTH,
    _CHUNK_SIZE,
    _CHUNK_DATA,
    _CHUNK_END,
    _TRAILERS,
    _CLOSED,
) = (
    _State.START,
    _State.HEAD,
    _State.LENGTH,
    _State.CHUNK_SIZE,
    _State.CHUNK_DATA,
    _State.CHUNK_END,
    _State.TRAILERS,
    _State.CLOSED,
)


@dataclasses.dataclass(slots=True)
class Request:
    """One parsed request: head, then body as it arrives (handed out once the body ended).

    ``target`` is the request-target as sent; ``parts`` is it taken apart (path and query
    without the fragment, the absolute-form's authority). ``version`` is what we answer in
    ("1.0" or "1.1"; HTTP/1.x with x > 1 is served as 1.1). ``upgrade`` is True for CONNECT:
    the connection closes after its response.
    """

    method: str = ""
    target: bytes = b""
    parts: Target = Target(TargetForm.ORIGIN, b"/", b"")
    version: str = "1.1"
    headers: list[tuple[bytes, bytes]] = dataclasses.field(default_factory=list)
    keep_alive: bool = True
    body: bytearray = dataclasses.field(default_factory=bytearray)
    expect_continue: bool = False
    upgrade: bool = False


class RequestParser:
    """Turns the bytes of one connection into :class:`Request` objects, in order.

    ``feed(data)`` raises an :class:`~server.errors.HTTPError` for a request the server must
    refuse; after that the connection is answered and closed, the parser is not fed again.
    """

    def __init__(self, *, max_header_bytes: int, max_headers: int, max_body: int) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.max_body = max_body
        self._buf = bytearray()
        self._pos = 0  # the first byte of _buf not consumed yet
        self._scan = 0  # where the search for the end of a head or trailer section resumes
        self._state = _START
        self._ready: collections.deque[Request] = collections.deque()
        self._current: Request | None = None
        self._remaining = 0  # body bytes still due (LENGTH) or of the current chunk
        self._extension_bytes = 0  # chunk-extension bytes of the current request
        self._continue_due = False
        self._error: errors.HTTPError | None = None
        self._chunked = False  # the current request's body is chunked
        self._blank = 0  # bytes of empty lines skipped before the current request-line
        self._line_ok = False  # the current request-line is complete and checked
        self._checked = 0  # line endings are checked up to here (see lines.check_line_endings)
        self._llhttp: httptools.HttpRequestParser | None = None  # while it reads a head
        self._leftover = False  # bytes came after a request that closes the connection

    # -- the surface the connection loop uses ------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Parse ``data``; complete requests become available from :meth:`next_request`.

        A refusal is raised here, unless requests completed before it in the same bytes (a
        pipeline ending in garbage): then those are served first and :meth:`next_request`
        raises the refusal when they are used up.
        """
        if self._error is not None:
            raise self._error
        if self._state is _CLOSED or not data:
            self._leftover = self._leftover or bool(data)
            return  # bytes after a request that closes the connection are not read.
        buf = self._buf
        if self._pos == len(buf):
            buf.clear()
            self._pos = self._scan = self._checked = 0
        elif self._pos > 65536 and self._pos * 2 > len(buf):
            del buf[: self._pos]  # compact: consumed bytes never pile up
            self._scan = max(0, self._scan - self._pos)
            self._checked = max(0, self._checked - self._pos)
            self._pos = 0
        buf += data
        try:
            self._run()
        except errors.HTTPError as exc:
            self._error = exc
            self._state = _CLOSED
            if not self._ready:
                raise

    def next_request(self) -> Request | None:
        """The oldest complete request not yet taken, or None; raises a pending refusal."""
        if self._ready:
            return self._ready.popleft()
        if self._error is not None:
            raise self._error
        return None

    @property
    def between_requests(self) -> bool:
        """True when nothing of a next request has arrived since the last complete one."""
        return self._state is _START

    @property
    def in_head(self) -> bool:
        """True while a request has begun but its head is not complete."""
        return self._state is _HEAD

    @property
    def body_size(self) -> int:
        """Bytes of the current request's body buffered so far (0 between requests)."""
        request = self._current
        return len(request.body) if request is not None else 0

    @property
    def in_body(self) -> bool:
        """True while a request's head is in and its body (or trailer section) is not."""
        return self._state not in (_START, _HEAD, _CLOSED)

    @property
    def has_request(self) -> bool:
        """True when a complete request is waiting for :meth:`next_request`."""
        return bool(self._ready)

    @property
    def has_leftover(self) -> bool:
        """True when bytes arrived after the request that closes the connection (they were
        not read): closing at once could reset the connection under our response."""
        return self._leftover or (self._state is _CLOSED and self._pos < len(self._buf))

    @property
    def closed(self) -> bool:
        """True after a request that ends the connection (close, CONNECT) or a refusal."""
        return self._state is _CLOSED

    def take_continue(self) -> bool:
        """True once when the current request awaits ``100 Continue`` before sending its body."""
        due, self._continue_due = self._continue_due, False
        return due

    # -- framing ---------------------------------------------------------------------------------

    def _run(self) -> None:
        """Consume as much of the buffer as forms messages (several when pipelined)."""
        while self._pos < len(self._buf):
            state = self._state
            if state is _START:
                self._state = _HEAD
                self._scan = self._checked = self._pos
                self._blank = 0
                self._line_ok = False
            elif state is _HEAD:
                if not self._head():
                    return
            elif state is _LENGTH:
                self._length_body()
            elif state is _CHUNK_SIZE:
                if not self._chunk_size():
                    return
            elif state is _CHUNK_DATA:
                self._chunk_data()
            elif state is _CHUNK_END:
                if not self._chunk_end():
                    return
            elif state is _TRAILERS:
                if not self._trailers():
                    return
            else:  # CLOSED
                return

    def _head(self) -> bool:
        """The head once its empty line is in: handed to llhttp; False while incomplete."""
        buf, limit = self._buf, self.max_header_bytes
        while buf.startswith(b"\r\n", self._pos):
            self._pos += 2  # empty lines before the request-line are ignored (RFC 9112 §2.2)
            self._blank += 2
            if self._blank > limit:
                raise errors.BadRequest(f"Over {limit} bytes of empty lines before a request.")
        start = self._pos
        end = buf.find(b"\r\n\r\n", max(start, self._scan))
        if end >= 0:  # the usual case: the whole head is here
            head_end = end + 4
            line_end = buf.find(b"\r\n", start, head_end)
            if line_end - start > limit:
                raise errors.URITooLong(f"The request line is over the {limit} byte limit.")
            if head_end - start > limit + 2:
                raise errors.HeadersTooLarge(
                    f"The request line and headers are over the {limit} byte limit."
                )
            head = bytes(buf[start:head_end])
            self._pos = head_end
            self._begin_body(self._parse_head(head, line_end - start))
            return True
        if not self._line_ok:
            line_end = buf.find(b"\r\n", start, start + limit + 2)
            if line_end < 0:
                if len(buf) - start > limit:
                    # RFC 9112 §3: a request-target longer than the server parses MUST get 414.
                    raise errors.URITooLong(f"The request line is over the {limit} byte limit.")
                lines.check_line_start(buf, start)
            else:
                lines.check_request_line(bytes(buf[start:line_end]))
                self._line_ok = True
        if len(buf) - start > limit:
            raise errors.HeadersTooLarge(
                f"The request line and headers are over the {limit} byte limit."
            )
        self._checked = lines.check_line_endings(buf, max(start, self._checked))
        self._scan = max(start, len(buf) - 3)
        return False

    def _parse_head(self, head: bytes, line_end: int) -> Request:
        """llhttp checks the head's syntax; http11 the request rules; returns the request."""
        method, target = lines.check_request_line(head[:line_end])
        request = self._current = Request(method=method.decode("ascii"), target=target)
        parser = self._llhttp = httptools.HttpRequestParser(self)
        # HTTP/1.x with x > 1 is 1.1 to us, and another major a 505 (RFC 9110 §2.5, §6.2), not
        # llhttp's 400: so llhttp lets any digit.digit version through and http11 decides.
        parser.set_dangerous_leniencies(lenient_version=True)
        fed = head
        if method not in lines.LLHTTP_METHODS:  # any token is a method (RFC 9110 §9.1)
            fed = b"GET" + head[len(method) :]
        try:
            parser.feed_data(fed)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, errors.HTTPError):
                raise exc.__context__ from None
            raise
        except httptools.HttpParserUpgrade:
            pass  # Upgrade is ignored (RFC 9110 §7.8); CONNECT is handled below.
        except httptools.HttpParserError as exc:
            raise errors.BadRequest(f"Malformed request: {exc}.") from None
        self._llhttp = None
        # the request rules (http11) and the framing, in one pass over the fields
        request.parts = http11.split_target(request.method, request.target)
        content_length: int | None = None
        hosts: list[bytes] = []
        codings: list[bytes] = []
        content_types = 0
        for name, value in request.headers:
            lower = name.lower()
            if lower == b"host":
                hosts.append(value)
            elif lower == b"content-type":
                content_types += 1
            elif lower == b"transfer-encoding":
                codings.append(value)
            elif lower == b"content-length":
                content_length = self._content_length(value)
            elif lower == b"expect":
                if value.lower() != b"100-continue":
                    raise errors.ExpectationFailed(f"Expect {value[:80]!r} is not supported.")
                request.expect_continue = request.version == "1.1"
        http11.check_host(hosts, request.version, request.parts)
        if content_types > 1:
            http11.check_singletons(content_types)
        chunked = (
            http11.transfer_chunked(codings, request.version, content_length is not None)
            if codings
            else False
        )
        if request.method == "CONNECT":
            request.upgrade = True  # RFC 9110 §9.3.6: no content; the connection ends after it
            content_length = None
            chunked = False
        self._remaining = content_length or 0
        self._chunked = chunked
        return request

    def _content_length(self, value: bytes) -> int:
        """Content-Length = 1*DIGIT (llhttp checked the syntax); any number of leading zeros."""
        digits = value.lstrip(b"0")
        if len(digits) > _CONTENT_LENGTH_DIGITS_MAX or int(digits or b"0") > self.max_body:
            raise errors.PayloadTooLarge(
                f"The declared body of {value[:40]!r} bytes is over the {self.max_body} byte limit."
            )
        return int(digits or b"0")

    def _begin_body(self, request: Request) -> None:
        self._extension_bytes = 0
        if self._chunked:
            self._state = _CHUNK_SIZE
        elif self._remaining:
            self._state = _LENGTH
        else:
            self._complete()
            return
        self._continue_due = request.expect_continue

    def _length_body(self) -> None:
        if self._take_body():
            self._complete()

    def _take_body(self) -> bool:
        """Move what is there of the ``_remaining`` body bytes (a Content-Length body or the
        current chunk's data) into the request; True when none remain."""
        request = self._current
        assert request is not None
        buf, pos = self._buf, self._pos
        take = min(self._remaining, len(buf) - pos)
        request.body += buf[pos : pos + take]
        self._pos += take
        self._remaining -= take
        return not self._remaining

    def _chunk_size(self) -> bool:
        """chunk-size [ chunk-ext ] CRLF (RFC 9112 §7.1, §7.1.1)."""
        buf, pos = self._buf, self._pos
        end = buf.find(b"\r\n", pos, pos + CHUNK_LINE_MAX + 2)
        if end < 0:
            if len(buf) - pos > CHUNK_LINE_MAX:
                raise errors.BadRequest(f"A chunk-size line is over {CHUNK_LINE_MAX} bytes.")
            lines.check_chunk_line(bytes(buf[pos:]), complete=False)
            return False
        line = bytes(buf[pos:end])
        size_text = lines.check_chunk_line(line, complete=True)
        self._extension_bytes += len(line) - len(size_text)
        if self._extension_bytes > self.max_header_bytes:
            raise errors.BadRequest(
                f"The request's chunk extensions are over {self.max_header_bytes} bytes."
            )
        digits = size_text.lstrip(b"0")
        request = self._current
        assert request is not None
        if (
            len(digits) > _CHUNK_SIZE_DIGITS_MAX
            or len(request.body) + int(digits or b"0", 16) > self.max_body
        ):
            raise errors.PayloadTooLarge(
                f"The request body is over the {self.max_body} byte limit."
            )
        self._remaining = int(digits or b"0", 16)
        self._pos = end + 2
        if self._remaining:
            self._state = _CHUNK_DATA
        else:
            self._state = _TRAILERS
            self._scan = self._checked = self._pos
        return True

    def _chunk_data(self) -> None:
        if self._take_body():
            self._state = _CHUNK_END

    def _chunk_end(self) -> bool:
        buf, pos = self._buf, self._pos
        if len(buf) - pos < 2:
            if buf[pos : pos + 1] != b"\r":
                raise errors.BadRequest("A chunk's data is longer than its size (RFC 9112 §7.1).")
            return False
        if buf[pos : pos + 2] != b"\r\n":
            raise errors.BadRequest("A chunk's data is longer than its size (RFC 9112 §7.1).")
        self._pos += 2
        self._state = _CHUNK_SIZE
        return True

    def _trailers(self) -> bool:
        """The trailer section: field lines then an empty line (RFC 9112 §7.1.2); each field
        checked (http11.check_trailer_field), counted with the headers, then dropped."""
        buf, pos = self._buf, self._pos
        if buf.startswith(b"\r\n", pos):
            self._pos = pos + 2
            self._complete()
            return True
        if len(buf) - pos == 1 and buf[pos] == 13:  # a lone CR so far: its LF may follow
            return False
        end = buf.find(b"\r\n\r\n", max(pos, self._scan))
        if end < 0:
            if len(buf) - pos > self.max_header_bytes:
                raise errors.HeadersTooLarge(
                    f"The trailer section is over the {self.max_header_bytes} byte limit."
                )
            self._checked = lines.check_line_endings(buf, max(pos, self._checked))
            self._scan = max(pos, len(buf) - 3)
            return False
        if end + 4 - pos > self.max_header_bytes + 2:
            raise errors.HeadersTooLarge(
                f"The trailer section is over the {self.max_header_bytes} byte limit."
            )
        request = self._current
        assert request is not None
        fields = bytes(buf[pos:end]).split(b"\r\n")
        if len(fields) + len(request.headers) > self.max_headers:
            raise errors.HeadersTooLarge(
                f"The request has more than {self.max_headers} header and trailer fields."
            )
        for line in fields:
            http11.check_trailer_line(line)
        self._pos = end + 4
        self._complete()
        return True

    def _complete(self) -> None:
        request = self._current
        assert request is not None
        self._continue_due = False
        self._ready.append(request)
        self._current = None
        if not request.keep_alive or request.upgrade:
            self._state = _CLOSED  # what follows is not read (close, or tunnel data)
        else:
            self._state = _START

    # -- llhttp callbacks (called from inside feed_data, for one head) -----------------------

    def on_headers_complete(self) -> None:
        # read here: llhttp clears its flags when the message completes
        request, parser = self._current, self._llhttp
        assert request is not None and parser is not None
        version = parser.get_http_version()
        served = lines.SERVED_VERSIONS.get(version)
        if served is None:
            major, _, minor = version.partition(".")
            served = http11.version_served(int(major), int(minor))
        request.version = served
        request.keep_alive = parser.should_keep_alive()

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self._current
        assert request is not None
        # trailing OWS is not part of the value (RFC 9110 §5.5)
        request.headers.append((name, value.rstrip(b" \t")))
        if len(request.headers) > self.max_headers:
            raise errors.HeadersTooLarge(
                f"The request has more than {self.max_headers} header fields."
            )
