"""Sans-IO request parsing on top of httptools (llhttp): bytes in, complete requests out.

One :class:`RequestParser` per connection; it knows nothing of sockets, so it is tested with
tables of bytes. It runs in the request thread that owns the connection.

llhttp, strict (every leniency off but the version's), already refuses much of what RFC 9112
says to refuse (Content-Length with Transfer-Encoding, duplicate Content-Length, obs-fold, bare
CR, NUL, bad chunk sizes, invalid tokens). On top of it :mod:`server.http11` applies the rest
of RFC 9112 / RFC 9110 (request-target forms, Host, Transfer-Encoding lists, HTTP/1.0 framing,
trailer fields, versions; its ``RULES`` table names each rule's section), and we enforce our
limits (header bytes and count, trailers included: 431; body size: 413) and refuse unknown
expectations (417). Every refusal is an :class:`~server.errors.HTTPError` carrying the status to
answer.

Bodies are buffered whole (up to ``max_body``) before the application runs, as waitress does:
the application never waits on a slow client while holding a request thread's client, and
``wsgi.input`` is a plain in-memory stream with exact ``read``/``readline`` semantics.
"""

from __future__ import annotations

import collections
import dataclasses

import httptools

from . import errors, http11
from .http11 import Target, TargetForm

_LINE_BUF_MAX = 512  # bytes of a request's start kept to tell an unknown method (501) from junk


@dataclasses.dataclass(slots=True)
class Request:
    """One parsed request: head, then body as it arrives (handed out once the body ended).

    ``target`` is the request-target as sent; ``parts`` is it taken apart (path and query
    without the fragment, the absolute-form's authority). ``version`` is what we answer in
    ("1.0" or "1.1"; HTTP/1.x with x > 1 is served as 1.1).
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
        self._parser = httptools.HttpRequestParser(self)
        # HTTP/1.x with x > 1 is 1.1 to us, and another major a 505 (RFC 9110 §2.5, §6.2), not
        # llhttp's 400: so llhttp lets any digit.digit version through and http11 decides.
        self._parser.set_dangerous_leniencies(lenient_version=True)
        self._line_buf = b""  # the start of a request not yet begun (see _feed)
        self._method_unknown = False  # llhttp refused the method; the line decides 501 or 400
        self._completed = 0  # requests completed on this connection
        self._trailer_count = 0
        self._ready: collections.deque[Request] = collections.deque()
        self._current: Request | None = None
        self._in_head = False
        self._began_this_feed = False
        self._head_bytes = 0
        self._url_parts: list[bytes] = []
        self._url_bytes = 0
        self._continue_due = False
        self._error: errors.HTTPError | None = None
        self.upgraded = False

    # -- the surface the connection loop uses ------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Parse ``data``; complete requests become available from :meth:`next_request`.

        A refusal is raised here, unless requests completed before it in the same bytes (a
        pipeline ending in garbage): then those are served first and :meth:`next_request`
        raises the refusal when they are used up.
        """
        if self._error is not None:
            raise self._error
        if self.upgraded:
            return  # bytes after an Upgrade/CONNECT request are not HTTP; we close after it.
        self._began_this_feed = False
        was_in_head = self._in_head
        if not self._completed and len(self._line_buf) < _LINE_BUF_MAX:
            # the first request's start, to judge an unknown method (see _judge_unknown_method);
            # later requests may start mid-feed, where we cannot find their first byte.
            self._line_buf = (self._line_buf + data)[:_LINE_BUF_MAX]
        try:
            if self._method_unknown:  # llhttp stopped at the method: wait for the line's end
                self._judge_unknown_method()
                return
            counted = self._head_bytes
            self._feed(data)
            if (
                self._in_head
                and was_in_head
                and not self._began_this_feed
                and self._head_bytes == counted
                and self._url_parts  # the method before it is llhttp's, bounded by its list
            ):
                # Every byte of this feed belongs to an unfinished head and no callback counted
                # it: bound what httptools buffers for a header that never ends (the callbacks
                # only see finished fields; the request-target is counted by on_url).
                self._head_bytes += len(data)
                self._check_head_size()
        except errors.HTTPError as exc:
            self._error = exc
            if not self._ready:
                raise

    def _feed(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, errors.HTTPError):
                raise exc.__context__ from None
            raise
        except httptools.HttpParserUpgrade:
            self.upgraded = True
        except httptools.HttpParserInvalidMethodError:
            # Only when this request's bytes start the buffer (not after a pipelined request in
            # the same feed) can we read its line; then wait for the line's end and judge it.
            if self._completed or not self._line_buf:
                raise errors.BadRequest("Malformed request: invalid method.") from None
            self._method_unknown = True
            self._judge_unknown_method()
        except httptools.HttpParserError as exc:
            raise errors.BadRequest(f"Malformed request: {exc}.") from None

    def _judge_unknown_method(self) -> None:
        """A method llhttp does not know: 501 if the request line is well formed (RFC 9110
        §9.1), else 400; nothing yet while the line may still become well formed. Judged for
        the first request of a connection only (a later one is 400): whole and byte-by-byte
        feeds then always agree."""
        buf = self._line_buf
        if b"\n" not in buf.lstrip(b"\r\n") and len(buf) < _LINE_BUF_MAX:
            if http11.REQUEST_LINE_PREFIX.fullmatch(buf.rstrip(b"\r")):
                return  # could still become a well-formed line: wait for its end
            raise errors.BadRequest("Malformed request: invalid method.")
        if http11.REQUEST_LINE.match(buf):
            method = buf.lstrip(b"\r\n").partition(b" ")[0][:40]
            raise errors.NotImplementedByServer(
                f"The method {method!r} is not implemented (RFC 9110 §9.1)."
            )
        raise errors.BadRequest("Malformed request: invalid method.")

    def next_request(self) -> Request | None:
        """The oldest complete request not yet taken, or None; raises a pending refusal."""
        if self._ready:
            return self._ready.popleft()
        if self._error is not None:
            raise self._error
        return None

    @property
    def between_requests(self) -> bool:
        """True when no request has begun since the last complete one (nothing half-read)."""
        return self._current is None and not self.upgraded

    @property
    def in_head(self) -> bool:
        """True while a request has begun but its headers are not complete."""
        return self._in_head

    def take_continue(self) -> bool:
        """True once when the current request awaits ``100 Continue`` before sending its body."""
        due, self._continue_due = self._continue_due, False
        return due

    # -- httptools callbacks (called from inside feed) -------------------------------------

    def on_message_begin(self) -> None:
        self._current = Request()
        self._in_head = True
        self._began_this_feed = True
        self._head_bytes = 0
        self._url_parts = []
        self._url_bytes = 0
        self._trailer_count = 0

    def on_url(self, url: bytes) -> None:
        self._url_parts.append(url)
        self._url_bytes += len(url)
        if self._url_bytes > self.max_header_bytes:
            # RFC 9112 §3: a request-target longer than the server parses MUST get 414.
            raise errors.URITooLong(
                f"The request-target is over the {self.max_header_bytes} byte limit."
            )
        self._head_bytes += len(url)
        self._check_head_size()

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self._current
        assert request is not None
        value = value.rstrip(b" \t")  # trailing OWS is not part of the value (RFC 9110 §5.5)
        self._head_bytes += len(name) + len(value) + 4
        self._check_head_size()
        if not self._in_head:
            # A trailer field: checked (RFC 9110 §6.5.1), counted, then dropped (WSGI has no
            # place for it).
            http11.check_trailer_field(name)
            self._trailer_count += 1
            if self._trailer_count + len(request.headers) > self.max_headers:
                raise errors.HeadersTooLarge(
                    f"The request has more than {self.max_headers} header and trailer fields."
                )
            return
        request.headers.append((name, value))
        if len(request.headers) > self.max_headers:
            raise errors.HeadersTooLarge(
                f"The request has more than {self.max_headers} header fields."
            )

    def on_headers_complete(self) -> None:
        request = self._current
        assert request is not None
        self._in_head = False
        self._head_bytes = 0  # from here on it counts trailer bytes (the same limit applies)
        parser = self._parser
        request.target = b"".join(self._url_parts)
        request.method = parser.get_method().decode("ascii")
        major, _, minor = parser.get_http_version().partition(".")
        request.version = http11.version_served(int(major), int(minor))
        request.keep_alive = parser.should_keep_alive()
        request.upgrade = parser.should_upgrade()
        request.parts = http11.split_target(request.method, request.target)
        content_length = None
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
                content_length = int(value)
            elif lower == b"expect":
                if value.lower() != b"100-continue":
                    raise errors.ExpectationFailed(f"Expect {value[:80]!r} is not supported.")
                request.expect_continue = request.version == "1.1"
        http11.check_host(hosts, request.version, request.parts)
        http11.check_singletons(content_types)
        http11.transfer_chunked(codings, request.version, content_length is not None)
        if content_length is not None and content_length > self.max_body:
            raise errors.PayloadTooLarge(
                f"The declared body of {content_length} bytes is over the "
                f"{self.max_body} byte limit."
            )
        self._continue_due = request.expect_continue and content_length != 0

    def on_body(self, body: bytes) -> None:
        request = self._current
        assert request is not None
        request.body += body
        if len(request.body) > self.max_body:
            raise errors.PayloadTooLarge(
                f"The request body is over the {self.max_body} byte limit."
            )

    def on_message_complete(self) -> None:
        request = self._current
        assert request is not None
        self._continue_due = False
        self._completed += 1
        self._ready.append(request)
        self._current = None

    def _check_head_size(self) -> None:
        if self._head_bytes > self.max_header_bytes:
            raise errors.HeadersTooLarge(
                f"The request line and headers are over the {self.max_header_bytes} byte limit."
            )
