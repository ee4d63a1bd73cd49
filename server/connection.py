"""One client connection, served by one request thread from accept() to close.

The loop (like uWSGI's per-core loop): read bytes until the parser has a complete request, call
the application, write the response, and start over while the connection is kept alive. Every
socket wait is bounded: the socket has a short timeout (``TICK``) and each wait checks its own
deadline (header timeout while a head arrives, keep-alive timeout while idle, socket timeout while
a body or a response stalls) and whether the worker is stopping.

Nothing a client sends can end the thread: every refusal is an HTTP error response then close;
a client that vanishes just ends this connection. Application errors become a 500 with no
traceback in the body (the traceback goes to the log).
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from . import logs, response
from .config import TICK, Config
from .errors import HTTPError, RequestTimeout, ResponseError
from .parser import Request, RequestParser
from .scoreboard import Scoreboard
from .writer import ResponseWriter
from .wsgi import FileWrapper, ResponseStart, WSGIApp, build_environ

FAIR_SHARE = 16  # requests a connection may make in a row while others wait to be accepted
RECV_SIZE = 65536

log = logs.get()
access_log = logging.getLogger(logs.ACCESS_LOGGER_NAME)


class WorkerView(Protocol):
    """What a connection needs from its worker (see :class:`server.worker.Worker`)."""

    config: Config
    app: WSGIApp
    base_environ: dict[str, Any]
    scoreboard: Scoreboard
    stopping: threading.Event

    def request_started(self) -> None: ...

    def clients_waiting(self) -> bool: ...


class ClientGone(Exception):
    """The client closed or reset the connection, or stalled past the socket timeout."""


class Connection:
    """Serves one accepted socket; runs entirely in the request thread that accepted it."""

    def __init__(self, sock: socket.socket, remote: tuple[str, int], worker: WorkerView, slot: int) -> None:
        self.sock = sock
        self.remote = remote
        self.worker = worker
        self.config = worker.config
        self.slot = slot
        self.parser = RequestParser(
            max_header_bytes=self.config.max_header_bytes,
            max_headers=self.config.max_headers,
            max_body=self.config.max_body,
        )
        self.served = 0

    def serve(self) -> None:
        """Serve requests until the client or the server ends the connection; never raises
        for anything the client did."""
        sock = self.sock
        try:
            sock.settimeout(TICK)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while True:
                try:
                    request = self._read_request()
                except HTTPError as exc:
                    log.info("refused %s from %s: %s", exc.status, self.remote[0], logs.printable(str(exc)))
                    self._send_quietly(response.for_http_error(exc))
                    return
                if request is None:
                    return
                if not self._handle(request):
                    return
        except ClientGone:
            return
        finally:
            sock.close()

    # -- reading -------------------------------------------------------------------------------

    def _read_request(self) -> Request | None:
        """The next complete request, or None when the connection should just close."""
        parser, config = self.parser, self.config
        request = parser.next_request()
        if request is not None:
            return request
        now = time.monotonic()
        idle = not parser.in_head
        idle_limit = config.keepalive_timeout if self.served else config.header_timeout
        deadline = now + idle_limit
        yielding = idle and self.served > 0
        while True:
            if idle and self.served and self.worker.stopping.is_set():
                return None
            try:
                data = self.sock.recv(RECV_SIZE)
            except TimeoutError:
                if yielding and self.worker.clients_waiting():
                    return None  # idle while others wait to be accepted: give the thread up.
                if time.monotonic() < deadline:
                    continue
                if idle:
                    return None  # an idle connection past its keep-alive: close quietly.
                if parser.in_head:
                    raise RequestTimeout(f"The headers did not arrive within {config.header_timeout} s.") from None
                raise ClientGone() from None
            except OSError:
                raise ClientGone() from None
            if not data:
                return None  # closed by the client, possibly mid-request: nothing to answer.
            yielding = False
            if idle:
                idle = False
                deadline = time.monotonic() + config.header_timeout
            elif parser.in_head and time.monotonic() >= deadline:
                # trickling bytes never time a recv out: slowloris is caught here.
                raise RequestTimeout(f"The headers did not arrive within {config.header_timeout} s.")
            parser.feed(data)
            request = parser.next_request()
            if request is not None:
                return request
            if parser.take_continue():
                self._send(response.CONTINUE)
            if not parser.in_head:
                deadline = time.monotonic() + config.socket_timeout  # a body: bound each stall.

    # -- the application -------------------------------------------------------------------------

    def _handle(self, request: Request) -> bool:
        """Run the application for ``request``; True if the connection stays open."""
        worker = self.worker
        environ = build_environ(request, worker.base_environ, self.remote)
        start = ResponseStart()
        writer = ResponseWriter(
            self._send, self._send_file, request, start,
            keepalive_enabled=self.config.keepalive_timeout > 0, stopping=worker.stopping.is_set,
            yield_turn=self.served + 1 >= FAIR_SHARE and worker.clients_waiting(),
        )
        start.sink = writer
        worker.request_started()  # first, so the last request before a recycle says "close"
        worker.scoreboard.begin(self.slot, request.method, environ["PATH_INFO"])
        started = time.monotonic()
        try:
            self._run_app(environ, start, writer)
        finally:
            worker.scoreboard.end(self.slot)
            self.served += 1
        if access_log.isEnabledFor(logging.INFO):  # False when --access-log is off
            access_log.info(
                '%s - "%s %s HTTP/%s" %s %d %.1fms', self.remote[0], request.method,
                logs.printable(request.target), request.version, writer.status_code,
                writer.body_bytes, (time.monotonic() - started) * 1000,
            )
        return writer.keep_alive

    def _run_app(self, environ: dict[str, Any], start: ResponseStart, writer: ResponseWriter) -> None:
        result: Iterable[bytes] | None = None
        try:
            result = self.worker.app(environ, start)
            if type(result) is list:
                writer.declare_length(sum(map(len, result)))
            if not (isinstance(result, FileWrapper) and writer.send_file(result)):
                for data in result:
                    writer.write(data)
            writer.finish()
        except ClientGone:
            raise
        except Exception as exc:  # the application's error: contained to this request.
            path = logs.printable(environ.get("PATH_INFO", ""))
            if isinstance(exc, ResponseError):
                log.error("application broke a WSGI rule on %s: %s", path, logs.printable(str(exc)))
            else:
                log.exception("application error on %s %s", environ["REQUEST_METHOD"], path)
            if writer.headers_sent:
                raise ClientGone() from None  # mid-body: the only honest signal is to close.
            writer.failed = True
            writer.status_code = "500"
            self._send(response.error_response(response.INTERNAL_ERROR))
        finally:
            close: Callable[[], Any] | None = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.exception("application iterable close() failed")

    # -- writing ----------------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        """Send all of ``data``; ClientGone if the client left or stalled past socket_timeout."""
        sock, view = self.sock, memoryview(data)
        deadline = time.monotonic() + self.config.socket_timeout
        while view:
            try:
                sent = sock.send(view)
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise ClientGone() from None
                continue
            except OSError:
                raise ClientGone() from None
            view = view[sent:]
            deadline = time.monotonic() + self.config.socket_timeout

    def _send_file(self, fd: int, offset: int, count: int) -> None:
        """``os.sendfile`` ``count`` bytes of ``fd`` from ``offset``; same stall rule as _send."""
        out = self.sock.fileno()
        deadline = time.monotonic() + self.config.socket_timeout
        while count > 0:
            try:
                sent = os.sendfile(out, fd, offset, count)
            except BlockingIOError:
                sent = 0
            except OSError:
                raise ClientGone() from None
            if sent:
                offset += sent
                count -= sent
                deadline = time.monotonic() + self.config.socket_timeout
                continue
            if time.monotonic() >= deadline:
                raise ClientGone()
            select.select([], [out], [], TICK)

    def _send_quietly(self, data: bytes) -> None:
        try:
            self._send(data)
        except ClientGone:
            pass  # the client left before hearing why; nothing else to do for it.
