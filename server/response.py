"""Sans-IO response framing: the head's bytes, chunk encoding, and the canned error responses.

Runs in request threads. Which framing a response gets is decided by :func:`framing`, a pure
function tested with a table: Content-Length from the application, else HTTP/1.1 chunked, else
(HTTP/1.0) the body ends when the connection closes.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from enum import Enum

from . import __version__
from .errors import HTTPError
from .parser import Request

SERVER_HEADER = f"Server: safeclients-server/{__version__}\r\n"

_date_cache: tuple[int, str] = (0, "")


def date_header() -> str:
    """``Date: ...\\r\\n`` for the current second (cached: formatting costs more than a request)."""
    global _date_cache
    now = int(time.time())
    second, header = _date_cache
    if second != now:
        header = f"Date: {formatdate(now, usegmt=True)}\r\n"
        _date_cache = (now, header)  # one tuple swap: a racing thread sees old or new, both valid.
    return header


class Framing(Enum):
    LENGTH = "length"  # the application's Content-Length
    CHUNKED = "chunked"  # Transfer-Encoding: chunked (HTTP/1.1)
    CLOSE = "close"  # body delimited by closing the connection (HTTP/1.0, no length)
    NONE = "none"  # no body: HEAD, 1xx, 204, 304


def framing(method: str, status: str, version: str, content_length: int | None) -> Framing:
    code = status[:3]
    if method == "HEAD" or code[0] == "1" or code in ("204", "304"):
        return Framing.NONE
    if content_length is not None:
        return Framing.LENGTH
    if version == "1.1":
        return Framing.CHUNKED
    return Framing.CLOSE


def keep_alive(
    request: Request,
    *,
    enabled: bool,
    stopping: bool,
    framing: Framing,
    failed: bool,
    body_short: bool,
) -> bool:
    """Whether a connection stays open after this response: the one place that decides.

    It closes when the client asked to (``Connection: close``, HTTP/1.0 without keep-alive),
    after an Upgrade/CONNECT request, when keep-alive is off (``--keepalive-timeout 0``), when
    the worker is stopping, when the body is delimited by the close (HTTP/1.0, no length), when
    the application failed or sent less than its Content-Length.
    """
    return (
        request.keep_alive
        and not request.upgrade
        and enabled
        and not stopping
        and framing is not Framing.CLOSE
        and not failed
        and not body_short
    )


def serialize_head(
    status: str, headers: list[tuple[str, str]], *, chunked: bool, keep_alive: bool, version: str
) -> bytes:
    """The status line and headers, Date and Server added, Connection as decided."""
    lines = [f"HTTP/1.1 {status}\r\n", date_header(), SERVER_HEADER]
    lines.extend(f"{name}: {value}\r\n" for name, value in headers)
    if chunked:
        lines.append("Transfer-Encoding: chunked\r\n")
    if not keep_alive:
        lines.append("Connection: close\r\n")
    elif version == "1.0":
        lines.append("Connection: keep-alive\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


def encode_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def error_response(status_line: str, message: str = "") -> bytes:
    """A complete plain-text error response that closes the connection; no request data echoed."""
    body = (message or status_line).encode("ascii", "replace") + b"\n"
    head = serialize_head(
        status_line,
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
        chunked=False,
        keep_alive=False,
        version="1.1",
    )
    return head + body


def for_http_error(error: HTTPError) -> bytes:
    return error_response(error.status_line)


INTERNAL_ERROR = "500 Internal Server Error"
