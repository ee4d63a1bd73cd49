"""PEP 3333 for one request: the environ, ``start_response`` and ``wsgi.file_wrapper``.

Sans-IO: :class:`ResponseStart` records and validates what the application declared; the
connection (:mod:`server.connection`) decides when bytes go out. Everything here runs in the
request thread serving the request.

Rules enforced (each a :class:`~server.errors.ResponseError`, so the client gets a 500 and the log
gets the reason): the status is ``"NNN Reason"``; header names are tokens; header values hold no
CR, LF or NUL (no header injection); hop-by-hop headers are refused (PEP 3333: they are the
server's business); ``start_response`` again without ``exc_info`` is an error, with ``exc_info``
it replaces the headers if none were sent, else re-raises the application's exception.
"""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import IO, Any, Protocol
from urllib.parse import unquote_to_bytes

from .errors import ResponseError
from .parser import Request

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
OptExcInfo = ExcInfo | tuple[None, None, None]  # what sys.exc_info() returns
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Any]

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_BAD_VALUE = re.compile("[\x00\r\n\u0100-\U0010ffff]")  # CR/LF/NUL, or not latin-1
_STATUS = re.compile(r"[1-9]\d\d [^\x00-\x1f\x7f]*\Z")

# Header name -> environ key, filled as names are seen; bounded so hostile names cannot grow it.
_KEYS: dict[bytes, str | None] = {}
_KEYS_MAX = 1024


def _environ_key(name: bytes) -> str | None:
    """``HTTP_X_Y`` for ``X-Y``; None for names with an underscore (dropped, as nginx does,
    so ``X_Y`` cannot pose as ``X-Y``)."""
    key = _KEYS.get(name)
    if key is None and name not in _KEYS:
        text = name.decode("latin-1")
        if "_" in text:
            key = None
        else:
            key = text.upper().replace("-", "_")
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                key = "HTTP_" + key
        if len(_KEYS) < _KEYS_MAX:
            _KEYS[name] = key
    return key


class FileWrapper:
    """``wsgi.file_wrapper``: iterates a file in blocks and closes it when the response ends."""

    def __init__(self, filelike: IO[bytes], blksize: int = 65536) -> None:
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self) -> Iterator[bytes]:
        read, size = self.filelike.read, self.blksize
        while block := read(size):
            yield block

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


def base_environ(server_name: str, server_port: int) -> dict[str, Any]:
    """The keys every request of a worker shares; built once per worker, copied per request."""
    return {
        "SERVER_NAME": server_name,
        "SERVER_PORT": str(server_port),
        "SCRIPT_NAME": "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
        "wsgi.file_wrapper": FileWrapper,
    }


def build_environ(
    request: Request, base: dict[str, Any], remote: tuple[str, int]
) -> dict[str, Any]:
    """The environ for ``request``: PATH_INFO percent-decoded then read as latin-1 (PEP 3333),
    never with the fragment; for the absolute-form, HTTP_HOST is the target's authority."""
    environ = base.copy()
    parts = request.parts  # path and query, the fragment dropped (server.http11.split_target)
    path = parts.path
    if b"%" in path:
        path = unquote_to_bytes(path)
    environ["REQUEST_METHOD"] = request.method
    environ["PATH_INFO"] = path.decode("latin-1")
    environ["QUERY_STRING"] = parts.query.decode("latin-1")
    environ["SERVER_PROTOCOL"] = "HTTP/" + request.version
    environ["REMOTE_ADDR"] = remote[0]
    environ["REMOTE_PORT"] = str(remote[1])
    chunked = False
    for name, value in request.headers:
        key = _environ_key(name)
        if key is None:
            continue
        text = value.decode("latin-1")
        if key in environ:
            text = environ[key] + ("; " if key == "HTTP_COOKIE" else ", ") + text
        environ[key] = text
        if key == "HTTP_TRANSFER_ENCODING":
            chunked = True
    if chunked or "CONTENT_LENGTH" in environ:
        # the body is whole and exactly its length: say it plainly (no leading zeros, which
        # could pass Python's int-digits limit in the application)
        environ["CONTENT_LENGTH"] = str(len(request.body))
    if parts.authority is not None:
        environ["HTTP_HOST"] = parts.authority.decode("latin-1")  # absolute-form: RFC 9112 §3.2.2
    environ["wsgi.input"] = io.BytesIO(request.body)
    return environ


class BodySink(Protocol):
    """Where the legacy ``write()`` sends the body (:class:`server.writer.ResponseWriter`)."""

    @property
    def headers_sent(self) -> bool: ...

    def write(self, data: bytes) -> None: ...


class ResponseStart:
    """What the application passed to ``start_response``; one per request.

    It only records and validates; the response writer (its ``sink``) reads it and never edits
    it. Once the sink has sent the head, a call with ``exc_info`` re-raises, as PEP 3333 asks.
    """

    __slots__ = ("status", "headers", "content_length", "sink")

    def __init__(self) -> None:
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.content_length: int | None = None
        self.sink: BodySink | None = None

    @property
    def headers_sent(self) -> bool:
        return self.sink is not None and self.sink.headers_sent

    def __call__(
        self, status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None and exc_info[1] is not None:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the frame, as PEP 3333 advises.
        elif self.status is not None:
            raise ResponseError("start_response() was called twice without exc_info.")
        self._check(status, headers)
        self.status = status
        self.headers = headers
        return self._write

    def _write(self, data: bytes) -> None:
        """The legacy ``write()`` callable: sends ``data`` at once, the head first if needed."""
        if self.sink is None:
            raise ResponseError("write() was called outside the application call.")
        self.sink.write(data)

    def _check(self, status: str, headers: list[tuple[str, str]]) -> None:
        if type(status) is not str or not _STATUS.match(status):
            raise ResponseError(f"Status {status!r} is not a str like '200 OK'.")
        if type(headers) is not list:
            raise ResponseError(
                f"Headers must be a list of (name, value) tuples, not {type(headers).__name__}."
            )
        content_length = None
        for item in headers:
            if type(item) is not tuple or len(item) != 2:
                raise ResponseError(f"Header {item!r} is not a (name, value) tuple.")
            name, value = item
            if type(name) is not str or not _TOKEN.match(name):
                raise ResponseError(f"Header name {name!r} is not a token.")
            if type(value) is not str or _BAD_VALUE.search(value):
                raise ResponseError(
                    f"Header {name} has a value {value!r} with CR, LF, NUL or a non-latin-1 "
                    "character (header injection?)."
                )
            lower = name.lower()
            if lower in HOP_BY_HOP:
                raise ResponseError(
                    f"Hop-by-hop header {name!r} is the server's business (PEP 3333)."
                )
            if lower == "content-length":
                if not value.isdigit():
                    raise ResponseError(f"Content-Length {value!r} is not a number.")
                content_length = int(value)
        self.content_length = content_length
