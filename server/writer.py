"""The response writer: frames one response's body and hands the bytes to a send function.

Runs in the request thread serving the request. It knows nothing of sockets: the connection
(:mod:`server.connection`) hands it ``send(data)`` and ``send_file(fd, offset, count)``, which
raise :class:`~server.errors.ClientGone` when the client leaves. It reads what the
application declared from :class:`~server.wsgi.ResponseStart` and never edits it: the
Content-Length it adds for a list body is its own copy of the headers.

The head goes out with the first non-empty block (or at :meth:`ResponseWriter.finish`), so a
small response is one ``send``. Whether the connection stays open is decided by
:func:`server.response.keep_alive`, asked when the head is framed and again when the body ends.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable

from . import logs, response
from .errors import ResponseError
from .parser import Request
from .response import Framing
from .wsgi import FileWrapper, ResponseStart

Send = Callable[[bytes], None]
SendFile = Callable[[int, int, int], None]

log = logs.get()

# Plain names for the framings (an Enum member looked up on its class goes through
# EnumType.__getattr__ in Python 3.11: this module reads them several times a response).
_CHUNKED, _LENGTH, _NONE = Framing.CHUNKED, Framing.LENGTH, Framing.NONE


class ResponseWriter:
    """One response: head, body framing (length, chunked, close-delimited or none), end."""

    def __init__(
        self,
        send: Send,
        send_file: SendFile,
        request: Request,
        start: ResponseStart,
        *,
        keepalive_enabled: bool,
        stopping: Callable[[], bool],
    ) -> None:
        self._send = send
        self._send_file = send_file
        self.request = request
        self.start = start
        self._keepalive_enabled = keepalive_enabled
        self._stopping = stopping
        self.framing = _NONE
        self.remaining = 0
        self.headers_sent = False
        self.failed = False  # the application failed: the connection closes after this response
        self.body_short = False  # fewer bytes than the Content-Length: the client must not wait
        self.status_code = "-"
        self.body_bytes = 0
        self._added_length: int | None = None  # Content-Length we add for a body of known size

    @property
    def keep_alive(self) -> bool:
        """Whether the connection stays open after this response (see response.keep_alive)."""
        return response.keep_alive(
            self.request,
            enabled=self._keepalive_enabled,
            stopping=self._stopping(),
            framing=self.framing,
            failed=self.failed,
            body_short=self.body_short,
        )

    def _content_length(self) -> int | None:
        declared = self.start.content_length
        return declared if declared is not None else self._added_length

    def _head(self) -> bytes:
        start, request = self.start, self.request
        if start.status is None:
            raise ResponseError("The application sent a body before calling start_response().")
        self.status_code = start.status[:3]
        length = self._content_length()
        self.framing = response.framing(request.method, start.status, request.version, length)
        if self.framing is _LENGTH:
            assert length is not None
            self.remaining = length
        headers = start.headers
        if self._added_length is not None:
            headers = [*headers, ("Content-Length", str(self._added_length))]
        head = response.serialize_head(
            start.status,
            headers,
            chunked=self.framing is _CHUNKED,
            keep_alive=self.keep_alive,
            version=request.version,
        )
        self.headers_sent = True
        return head

    def write(self, data: bytes) -> None:
        """Send one block of the body (the head first if it has not gone out yet)."""
        if type(data) is not bytes:
            raise ResponseError(f"The application yielded {type(data).__name__}, not bytes.")
        if self.headers_sent:
            out = b""
        elif not data:
            return  # nothing to send yet; the head waits for the first real block.
        else:
            out = self._head()
        framing = self.framing
        if framing is _LENGTH:
            if len(data) > self.remaining:
                log.warning("application sent more than its Content-Length; the rest is dropped")
                data = data[: self.remaining]
            self.remaining -= len(data)
        elif framing is _NONE:
            data = b""
        self.body_bytes += len(data)
        if framing is _CHUNKED and data:
            data = response.encode_chunk(data)
        if out or data:
            self._send(out + data)

    def send_file(self, wrapper: FileWrapper) -> bool:
        """Send a ``wsgi.file_wrapper`` body with sendfile(2) when that is exact: a regular
        file and a declared Content-Length. False (nothing sent) means: iterate it instead."""
        try:
            fd = wrapper.filelike.fileno()
            offset = wrapper.filelike.tell()
        except (AttributeError, OSError, io.UnsupportedOperation):
            return False
        start = self.start
        if (
            start.status is None
            or start.content_length is None
            or not os.path.isfile(f"/proc/self/fd/{fd}")
        ):
            return False
        size = os.fstat(fd).st_size
        count = min(start.content_length, max(0, size - offset))
        self._send(self._head())
        if self.framing is _LENGTH:
            self._send_file(fd, offset, count)
            self.remaining -= count
            self.body_bytes += count
        return True

    def send_canned(self, data: bytes) -> None:
        """Send a complete canned response instead (the 500 after an application error,
        before any head went out)."""
        self.headers_sent = True
        self._send(data)

    def declare_length(self, length: int) -> None:
        """Add Content-Length for a body whose size is known before sending (a list, or empty)."""
        start = self.start
        if self._content_length() is None and start.status is not None and not self.headers_sent:
            code = start.status[:3]
            if code[0] != "1" and code not in ("204", "304"):
                self._added_length = length

    def finish(self) -> None:
        """The application's iterable ended: close the framing (or send a body-less head)."""
        out = b""
        if not self.headers_sent:
            if self.start.status is None:
                raise ResponseError("The application returned without calling start_response().")
            if self.request.method != "HEAD":
                self.declare_length(0)  # an empty body: say so instead of chunking nothing.
            out = self._head()
        if self.framing is _CHUNKED:
            out += response.LAST_CHUNK
        elif self.framing is _LENGTH and self.remaining:
            log.warning(
                "application sent %d bytes less than its Content-Length; closing", self.remaining
            )
            self.body_short = True
        if out:
            self._send(out)
