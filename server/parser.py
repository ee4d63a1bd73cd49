"""Sans-IO request parsing on top of httptools (llhttp): bytes in, complete requests out.

One :class:`RequestParser` per connection; it knows nothing of sockets, so it is tested with
tables of bytes. It runs in the request thread that owns the connection.

llhttp already refuses what RFC 9112 says to refuse (Content-Length with Transfer-Encoding,
duplicate Content-Length, obs-fold, bare CR, NUL, bad chunk sizes, invalid tokens). On top of it
we enforce our limits (header bytes and count: 431, body size: 413), refuse transfer-codings we
cannot decode (501), versions other than HTTP/1.0 and 1.1 (505) and unknown expectations (417).
Every refusal is an :class:`~server.errors.HTTPError` carrying the status to answer.

Bodies are buffered whole (up to ``max_body``) before the application runs, as waitress does:
the application never waits on a slow client while holding a request thread's client, and
``wsgi.input`` is a plain in-memory stream with exact ``read``/``readline`` semantics.
"""

from __future__ import annotations

import collections
import dataclasses

import httptools

from . import errors

_SUPPORTED_VERSIONS = frozenset({"1.0", "1.1"})


@dataclasses.dataclass(slots=True)
class Request:
    """One parsed request: head, then body as it arrives (handed out once the body ended)."""

    method: str = ""
    target: bytes = b""
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
        self._ready: collections.deque[Request] = collections.deque()
        self._current: Request | None = None
        self._in_head = False
        self._began_this_feed = False
        self._head_bytes = 0
        self._url_parts: list[bytes] = []
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
        try:
            self._feed(data)
            if self._in_head and was_in_head and not self._began_this_feed:
                # Every byte of this feed belongs to an unfinished head: bound what httptools
                # buffers for a header that never ends (the callbacks only see finished fields).
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
        except httptools.HttpParserError as exc:
            raise errors.BadRequest(f"Malformed request: {exc}.") from None

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

    def on_url(self, url: bytes) -> None:
        self._url_parts.append(url)
        self._head_bytes += len(url)
        self._check_head_size()

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self._current
        assert request is not None
        if not self._in_head:
            return  # a chunked trailer field: accepted and dropped, as WSGI has no place for it.
        request.headers.append((name, value))
        self._head_bytes += len(name) + len(value) + 4
        self._check_head_size()
        if len(request.headers) > self.max_headers:
            raise errors.HeadersTooLarge(
                f"The request has more than {self.max_headers} header fields."
            )

    def on_headers_complete(self) -> None:
        request = self._current
        assert request is not None
        self._in_head = False
        parser = self._parser
        request.target = b"".join(self._url_parts)
        request.method = parser.get_method().decode("ascii")
        request.version = parser.get_http_version()
        if request.version not in _SUPPORTED_VERSIONS:
            raise errors.VersionNotSupported(f"HTTP/{request.version} is not supported.")
        request.keep_alive = parser.should_keep_alive()
        request.upgrade = parser.should_upgrade()
        content_length = None
        for name, value in request.headers:
            lower = name.lower()
            if lower == b"transfer-encoding":
                if value.strip().lower() != b"chunked":
                    raise errors.NotImplementedByServer(
                        f"Transfer-Encoding {value[:80]!r} is not supported; only chunked is."
                    )
            elif lower == b"content-length":
                content_length = int(value)
            elif lower == b"expect":
                if value.strip().lower() != b"100-continue":
                    raise errors.ExpectationFailed(f"Expect {value[:80]!r} is not supported.")
                request.expect_continue = request.version == "1.1"
        if content_length is not None and content_length > self.max_body:
            raise errors.PayloadTooLarge(
                f"The declared body of {content_length} bytes is over the {self.max_body} byte limit."
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
        self._ready.append(request)
        self._current = None

    def _check_head_size(self) -> None:
        if self._head_bytes > self.max_header_bytes:
            raise errors.HeadersTooLarge(
                f"The request line and headers are over the {self.max_header_bytes} byte limit."
            )
