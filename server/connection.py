"""One client connection: read bytes, call the application, write the response, keep alive.

A :class:`Connection` lives from ``accept()`` to close, but it holds a request thread (a *core*,
:mod:`server.worker`) only while there is work: :meth:`Connection.serve` reads and answers every
request that is already there, and returns ``PARK`` as soon as the connection is idle between
requests with nothing to read, or when its turn is over (``TURN_REQUESTS`` in a row). The core
then hands it to the worker's dispatcher (:mod:`server.dispatch`), which watches it with epoll
and gives it to the next free core when bytes arrive (at once if they are already there, behind
the connections already waiting), or closes it when its idle deadline passes. So an idle
kept-alive connection never holds a thread while other connections wait (see server/README.md,
"Keep-alive").

The socket is non-blocking; every wait is a ``poll`` bounded by ``TICK`` and by its own deadline
(header timeout once a head has begun, socket timeout while a body or a response stalls).

Nothing a client sends can end the thread: every refusal is an HTTP error response then close;
a client that vanishes just ends this connection. Application errors become a 500 with no
traceback in the body (the traceback goes to the log).

Which thread: whichever core the dispatcher handed the connection to, one at a time (a parked
connection is owned by the dispatcher, a served one by exactly one core).
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal, Protocol

from . import logs, response
from .config import TICK, TURN_REQUESTS, Config
from .errors import HTTPError, RequestTimeout, ResponseError
from .parser import Request, RequestParser
from .scoreboard import Scoreboard
from .writer import ResponseWriter
from .wsgi import FileWrapper, ResponseStart, WSGIApp, build_environ

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


class ClientGone(Exception):
    """The client closed or reset the connection, or stalled past the socket timeout."""


PARK: Literal["park"] = (
    "park"  # idle between requests with nothing to read: the dispatcher watches it
)
CLOSED: Literal["closed"] = "closed"  # the connection is closed (client, refusal, or server)
Outcome = Literal["park", "closed"]


class Connection:
    """Serves one accepted socket, in whichever request thread currently holds it."""

    def __init__(self, sock: socket.socket, remote: tuple[str, int], worker: WorkerView) -> None:
        self.sock = sock
        self.remote = remote
        self.worker = worker
        self.config = worker.config
        self.slot = 0  # the core serving it now (its scoreboard slot)
        self.parser = RequestParser(
            max_header_bytes=self.config.max_header_bytes,
            max_headers=self.config.max_headers,
            max_body=self.config.max_body,
        )
        self.served = 0
        self._turn = 0  # requests answered in the current turn (see TURN_REQUESTS)
        self.polled = False  # registered with the dispatcher's epoll (set by the dispatcher)
        self._poll = select.poll()
        self._poll.register(sock.fileno(), select.POLLIN)
        self._poll_events = select.POLLIN
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def idle_limit(self) -> float:
        """How long it may stay parked: the keep-alive timeout once it has made a request,
        the header timeout before its first."""
        return self.config.keepalive_timeout if self.served else self.config.header_timeout

    def serve(self, slot: int) -> Outcome:
        """Answer every request that is there; ``PARK`` when idle, ``CLOSED`` when done.

        Never raises for anything the client did; closes the socket itself before ``CLOSED``.
        """
        self.slot = slot
        self._turn = 0
        try:
            while True:
                try:
                    request = self._read_request()
                except HTTPError as exc:
                    log.info(
                        "refused %s from %s: %s",
                        exc.status,
                        self.remote[0],
                        logs.printable(str(exc)),
                    )
                    self._send_quietly(response.for_http_error(exc))
                    break
                if isinstance(request, str):  # PARK
                    return PARK
                if request is None or not self._handle(request):
                    break
                self._turn += 1
        except ClientGone:
            pass
        except BaseException:
            self.close()
            raise
        self.close()
        return CLOSED

    def close(self) -> None:
        """Close the socket (idempotent; also drops it from every epoll set)."""
        self.sock.close()

    # -- reading -------------------------------------------------------------------------------

    def _read_request(self) -> Request | Literal["park"] | None:
        """The next complete request; ``PARK`` when idle with nothing to read; None to close."""
        parser, config, sock = self.parser, self.config, self.sock
        request = parser.next_request()
        if request is not None:
            return request
        if self._turn >= TURN_REQUESTS and parser.between_requests:
            return PARK  # its turn is over: back in line, even if its next request is there
        deadline = time.monotonic() + (
            config.header_timeout if parser.in_head else config.socket_timeout
        )
        while True:
            try:
                data = sock.recv(RECV_SIZE)
            except BlockingIOError:
                if parser.between_requests:
                    return PARK  # nothing begun: the dispatcher waits for the next request.
                self._wait(select.POLLIN, deadline)
                continue
            except OSError:
                raise ClientGone() from None
            if not data:
                return None  # closed by the client, possibly mid-request: nothing to answer.
            began = parser.between_requests
            parser.feed(data)
            request = parser.next_request()
            if request is not None:
                return request
            if parser.take_continue():
                self._send(response.CONTINUE)
            if parser.in_head:
                if began:
                    deadline = time.monotonic() + config.header_timeout  # a head began now
                elif time.monotonic() >= deadline:
                    # trickling bytes never time a wait out: slowloris is caught here.
                    raise RequestTimeout(
                        f"The headers did not arrive within {config.header_timeout} s."
                    )
            elif not parser.between_requests:
                deadline = time.monotonic() + config.socket_timeout  # a body: bound each stall.

    def _wait(self, events: int, deadline: float) -> None:
        """Wait until the socket is ready for ``events``, a TICK at most; past ``deadline``,
        RequestTimeout while a head arrives, else ClientGone."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if events == select.POLLIN and self.parser.in_head:
                raise RequestTimeout(
                    f"The headers did not arrive within {self.config.header_timeout} s."
                )
            raise ClientGone()
        if events != self._poll_events:
            self._poll.modify(self.sock.fileno(), events)
            self._poll_events = events
        self._poll.poll(min(remaining, TICK) * 1000)

    # -- the application -------------------------------------------------------------------------

    def _handle(self, request: Request) -> bool:
        """Run the application for ``request``; True if the connection stays open."""
        worker = self.worker
        environ = build_environ(request, worker.base_environ, self.remote)
        start = ResponseStart()
        writer = ResponseWriter(
            self._send,
            self._send_file,
            request,
            start,
            keepalive_enabled=self.config.keepalive_timeout > 0,
            stopping=worker.stopping.is_set,
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
                '%s - "%s %s HTTP/%s" %s %d %.1fms',
                self.remote[0],
                request.method,
                logs.printable(request.target),
                request.version,
                writer.status_code,
                writer.body_bytes,
                (time.monotonic() - started) * 1000,
            )
        return writer.keep_alive

    def _run_app(
        self, environ: dict[str, Any], start: ResponseStart, writer: ResponseWriter
    ) -> None:
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
            except BlockingIOError:
                self._wait(select.POLLOUT, deadline)
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
                self._wait(select.POLLOUT, deadline)
                continue
            except OSError:
                raise ClientGone() from None
            if not sent:
                raise ClientGone()  # the file ended early: the Content-Length cannot be met.
            offset += sent
            count -= sent
            deadline = time.monotonic() + self.config.socket_timeout

    def _send_quietly(self, data: bytes) -> None:
        try:
            self._send(data)
        except ClientGone:
            pass  # the client left before hearing why; nothing else to do for it.
