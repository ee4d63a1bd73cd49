"""One client connection: its bytes, its deadlines, and the answers to its requests.

A :class:`Connection` lives from ``accept()`` to close. It is held by exactly one thread at a
time, in one of two roles:

* **The dispatcher's** (:mod:`server.dispatch`, run by whichever free core got the epoll
  event): :meth:`Connection.on_readable` and :meth:`Connection.on_writable` never block. They
  read what is there into the parser, send what fits, and say what the connection waits for
  next (a :data:`Step`). A request head, a request body, a refusal's response and the tail of
  a response to a slow reader are all moved here, a few non-blocking calls at a time, so a
  slow client never holds a core: a core is handed the connection only when a whole request
  (head and body) is in (``READY``).
* **A core's** (:meth:`Connection.serve`): it runs the application for the requests that are
  in and writes the responses (each an :class:`~server.exchange.Exchange`). A response is
  sent without blocking; when more than :data:`~server.config.WRITE_BUFFER` waits for the
  client, the application's iterator (or the file to ``sendfile``) stays with the connection
  and the dispatcher continues the body as the client reads (``WRITE``). A core never waits
  on a client.

Deadlines (``deadline``, read by the dispatcher's sweep; a passing byte never resets them):

* the first request's head must be complete ``--header-timeout`` after ``accept()``;
* a later request's head ``--header-timeout`` after its first byte (an empty line counts);
* an idle kept-alive connection is closed ``--keepalive-timeout`` after its last response;
* a request body and a response must each move at least ``--min-rate`` bytes per second on
  average after a grace of ``--socket-timeout``, and never stall for longer than
  ``--socket-timeout`` (:func:`transfer_deadline`).

A refusal (any :class:`~server.errors.HTTPError`) is answered with its status and
``Connection: close``, then the connection is half-closed and what the client still sends is
read and dropped for a moment (:data:`~server.config.LINGER_SECONDS`), so the response is not
lost to a TCP reset (RFC 9112 §9.6).

Nothing a client sends can end a thread: every refusal is an HTTP error response then close;
a client that vanishes just ends this connection. Application errors become a 500 with no
traceback in the body (the traceback goes to the log).
"""

from __future__ import annotations

import logging
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol

from . import logs, response
from .budget import BodyBudget
from .config import LINGER_BYTES, LINGER_SECONDS, Config
from .errors import ClientGone, HTTPError, RequestTimeout, ServiceUnavailable
from .exchange import Exchange
from .parser import Request, RequestParser
from .relay import Relay
from .scoreboard import Scoreboard
from .writer import ResponseWriter
from .wsgi import ResponseStart, WSGIApp, build_environ

RECV_SIZE = 65536
READ_BURST = 4 * RECV_SIZE  # bytes one on_readable() takes before it lets other connections go
TURN_REQUESTS = 16  # pipelined requests answered in a row before the others get a core
WRITE_ROUNDS = 16  # WRITE_BUFFERs one on_writable() sends before it lets other connections go

log = logs.get()
access_log = logging.getLogger(logs.ACCESS_LOGGER_NAME)

# What a connection waits for next: a core (a request is in), bytes from the client, room to
# send, or nothing (closed).
Step = Literal["ready", "read", "write", "closed"]
READY: Step = "ready"
READ: Step = "read"
WRITE: Step = "write"
CLOSED: Step = "closed"

_Mode = Literal["read", "write", "linger"]
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() resets the connection


class WorkerView(Protocol):
    """What a connection needs from its worker (see :class:`server.worker.Worker`)."""

    config: Config
    app: WSGIApp
    relay: Relay
    base_environ: dict[str, Any]
    scoreboard: Scoreboard
    stopping: threading.Event

    def request_started(self) -> None: ...


def transfer_deadline(started: float, moved: int, last_progress: float, config: Config) -> float:
    """When a body or response that began at ``started`` and has moved ``moved`` bytes, the
    last at ``last_progress``, is too slow: below ``--min-rate`` on average after a grace of
    ``--socket-timeout``, or stalled for ``--socket-timeout``."""
    return min(
        last_progress + config.socket_timeout,
        started + config.socket_timeout + moved / config.min_rate,
    )


class Connection:
    """One accepted socket; held by the dispatcher or by one core at a time (module docstring)."""

    def __init__(
        self,
        sock: socket.socket,
        remote: tuple[str, int],
        worker: WorkerView,
        on_close: Callable[[Connection], None],
        budget: BodyBudget,
    ) -> None:
        self.sock = sock
        self.remote = remote
        self.worker = worker
        self.config = config = worker.config
        self._on_close: Callable[[Connection], None] | None = on_close
        self._budget = budget
        self._counted = 0  # bytes of the current request's body counted in the worker's budget
        self.slot = 0  # the core serving it now (its scoreboard slot)
        self.parser = RequestParser(
            max_header_bytes=config.max_header_bytes,
            max_headers=config.max_headers,
            max_body=config.max_body,
        )
        self.served = 0
        self.polled = False  # registered with the dispatcher's epoll (set by the dispatcher)
        self.registering = 0  # parks whose epoll_ctl is under way (the dispatcher's, its lock)
        now = time.monotonic()
        self.mode: _Mode = "read"
        self.deadline = now + config.header_timeout  # the whole first head, from accept
        self.idle_since = now  # when it last finished a response (for the oldest-idle choice)
        self._out = bytearray()  # response bytes not sent yet
        self._close_after_out = False
        self._refused = False  # its last response is a refusal: linger before closing
        self._linger_bytes = 0
        self._body_started = 0.0  # a request body (or a response) is moving: its clock
        self._moved = 0
        self._last_progress = now
        self._pending: Exchange | None = None  # a response body the dispatcher continues
        self._file_left: tuple[int, int, int] | None = None  # (fd, offset, count) to sendfile
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def idle(self) -> bool:
        """Kept alive between requests with nothing begun and nothing to send."""
        return (
            self.served > 0
            and self.mode == "read"
            and self.parser.between_requests
            and not self._out
        )

    @property
    def events(self) -> int:
        """The epoll events it waits for in its current mode."""
        if self.mode == "write" or self.parser.has_request:
            return select.EPOLLOUT  # writable at once: a pipelined request waits its turn
        if self._out:
            return select.EPOLLIN | select.EPOLLOUT
        return select.EPOLLIN

    def close(self) -> None:
        """Close the socket (idempotent; also drops it from every epoll set)."""
        on_close, self._on_close = self._on_close, None
        self.sock.close()
        self._release_body()
        exchange, self._pending = self._pending, None
        if exchange is not None:
            exchange.close()  # a body cut off: the application still gets its close()
        if on_close is not None:
            on_close(self)

    # -- the dispatcher's side: never blocks -----------------------------------------------

    def on_readable(self, now: float) -> Step:
        """Read what is there (a bounded burst) and feed it to the parser."""
        if self.mode == "write":
            return WRITE  # a response is going out: the next request waits (in the kernel)
        if self._out and self._flush() is CLOSED:
            return CLOSED
        if self.mode == "linger":
            return self._linger_read(now)
        parser, taken = self.parser, 0
        while taken < READ_BURST:
            try:
                data = self.sock.recv(RECV_SIZE)
            except BlockingIOError:
                break
            except OSError:
                self.close()
                return CLOSED
            if not data:
                self.close()  # closed by the client, possibly mid-request: nothing to answer.
                return CLOSED
            taken += len(data)
            was_idle, in_head = parser.between_requests, parser.in_head
            try:
                parser.feed(data)
            except HTTPError as exc:
                return self.refuse(exc)
            if parser.has_request:
                if self._counted:
                    self._release_body()  # whole now: a core holds it
                return READY  # the usual case: a whole request in one recv
            if was_idle and self.served:
                self.deadline = now + self.config.header_timeout  # a head began now
            if parser.in_body:
                size = parser.body_size
                if size > self._counted:
                    if not self._budget.take(size - self._counted):
                        return self.refuse(
                            ServiceUnavailable(
                                f"The worker already holds {self._budget.used} of its "
                                f"{self._budget.limit} bytes for request bodies being received."
                            )
                        )
                    self._counted = size
                if was_idle or in_head:
                    self._start_transfer(now)  # the head is in: the body's clock starts
                self._moved += len(data)
                self._last_progress = now
                self.deadline = transfer_deadline(self._body_started, self._moved, now, self.config)
            if parser.take_continue():
                self._out += response.CONTINUE
                if self._flush() is CLOSED:
                    return CLOSED
        if now >= self.deadline:
            return self.expire()
        return READ

    def on_writable(self, now: float, slot: int = 0) -> Step:
        """Send what fits of the pending output (and continue a pending body, in core
        ``slot``); then read again, close, or linger."""
        for _ in range(WRITE_ROUNDS):
            step = self._flush() if self._out else READ
            if step is not READ:
                return step
            if self._pending is None:
                break
            try:
                done = self._continue_body(slot)
            except ClientGone:
                self.close()
                return CLOSED
            if done:
                self._finish_pending()
            elif not self._out and self._file_left is not None:
                return WRITE  # sendfile would block
        else:
            return WRITE  # a fast reader of a long body: back in line after a few rounds
        if self.mode == "write":
            return self._output_done(now)
        if self.parser.has_request:
            return READY  # read before (pipelined): parked writable, its turn came
        return self.on_readable(now)

    def expire(self) -> Step:
        """Its deadline passed (dispatcher): a head or a body too slow gets 408, then close;
        an idle connection (kept alive, or fresh and silent) is closed quietly, as is one
        lingering or one whose client reads a response too slowly."""
        if self.mode == "read" and not self.parser.between_requests:
            slow = "headers" if self.parser.in_head else "body"
            return self.refuse(
                RequestTimeout(f"The request {slow} did not arrive before its deadline.")
            )
        if self.mode == "write":
            # too slow a reader: reset, so the kernel drops what it still holds for it too
            log.info("cut off a slow reader at %s after %d bytes", self.remote[0], self._moved)
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            except OSError:
                pass  # already reset by the client
        self.close()
        return CLOSED

    def refuse(self, exc: HTTPError) -> Step:
        """Answer a refusal with its status and ``Connection: close``; then linger."""
        log.info("refused %s from %s: %s", exc.status, self.remote[0], logs.printable(str(exc)))
        self._release_body()
        self._out += response.for_http_error(exc)
        self._close_after_out = self._refused = True
        self.mode = "write"
        now = time.monotonic()
        self._start_transfer(now)
        self.deadline = now + self.config.socket_timeout
        return self.on_writable(now)

    def _flush(self) -> Step:
        """Send what fits of ``_out`` (non-blocking): READ when all is sent, WRITE if some is
        left, CLOSED if the client is gone."""
        out = self._out
        try:
            sent = self.sock.send(out)
        except BlockingIOError:
            return WRITE
        except OSError:
            self.close()
            return CLOSED
        now = time.monotonic()
        del out[:sent]
        self._moved += sent
        self._last_progress = now
        if self.mode == "write":
            self.deadline = transfer_deadline(self._body_started, self._moved, now, self.config)
        return WRITE if out else READ

    def _output_done(self, now: float) -> Step:
        """The last response is out: close (lingering after a refusal), or wait for the next."""
        if self._close_after_out:
            if self._refused or self.parser.has_leftover:
                return self._begin_linger(now)  # the client may still be sending
            self.close()  # all read, all sent: close at once.
            return CLOSED
        self.mode = "read"
        self.idle_since = now
        return self._wait_next(now)

    def _wait_next(self, now: float) -> Step:
        """Between responses: the next request may have begun already (pipelined bytes)."""
        parser = self.parser
        if parser.has_request:
            return READY
        if parser.between_requests:
            self.deadline = now + self.config.keepalive_timeout
        elif parser.in_head:
            self.deadline = now + self.config.header_timeout
        else:
            self._start_transfer(now)
            self.deadline = transfer_deadline(now, 0, now, self.config)
        return READ

    def _begin_linger(self, now: float) -> Step:
        """RFC 9112 §9.6: half-close, then read and drop what the client still sends (bounded
        in time and bytes), so our last response is not destroyed by a reset."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close()
            return CLOSED
        self.mode = "linger"
        self.deadline = now + LINGER_SECONDS
        return self._linger_read(now)

    def _linger_read(self, now: float) -> Step:
        while True:
            try:
                data = self.sock.recv(RECV_SIZE)
            except BlockingIOError:
                return READ if now < self.deadline else self.expire()
            except OSError:
                data = b""
            self._linger_bytes += len(data)
            if not data or self._linger_bytes > LINGER_BYTES:
                self.close()
                return CLOSED

    def _release_body(self) -> None:
        counted, self._counted = self._counted, 0
        if counted:
            self._budget.give_back(counted)

    def _start_transfer(self, now: float) -> None:
        self._body_started = self._last_progress = now
        self._moved = 0

    # -- a core's side: answer the requests that are in ------------------------------------

    def serve(self, slot: int) -> Step:
        """Answer the complete requests (pipelined ones too, TURN_REQUESTS at most); then
        what to wait for.

        Never raises for anything the client did; closes the socket itself before ``CLOSED``.
        """
        self.slot = slot
        parser = self.parser
        closing = False
        try:
            for _ in range(TURN_REQUESTS):
                try:
                    request = parser.next_request()
                except HTTPError as exc:  # garbage after pipelined requests
                    return self.refuse(exc)
                if request is None:
                    break
                if not self._handle(request):
                    closing = True  # the response said close
                    break
                if self._pending is not None:
                    break  # the rest of this body first; later requests wait their turn
            # (more pipelined requests than a turn: back in line, found READY at once)
        except ClientGone:
            self.close()
            return CLOSED
        except BaseException:
            self.close()
            raise
        now = time.monotonic()
        if closing:
            self._close_after_out = True
        if self._pending is not None or self._out:
            self.mode = "write"  # the dispatcher sends the rest, on the response's clock
            self.deadline = transfer_deadline(
                self._body_started, self._moved, self._last_progress, self.config
            )
            return WRITE
        return self._output_done(now)

    # -- the application (a core; the dispatcher continues a long body) --------------------

    def _handle(self, request: Request) -> bool:
        """Run the application for ``request``; True if the connection stays open (or the
        body is left to the dispatcher: ``_pending``)."""
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
        exchange = Exchange(request, environ, writer, self.remote, worker.relay)
        self._body_started = self._last_progress = exchange.started  # the response's clock
        self._moved = 0
        done = False
        try:
            done = exchange.run(worker.app, start, self._out) and self._file_left is None
        finally:
            worker.scoreboard.end(self.slot)
            self.served += 1
            if not done:
                self._pending = exchange  # the dispatcher continues it (module docstring)
        if not done:
            return True
        exchange.finish()
        return writer.keep_alive

    def _continue_body(self, slot: int) -> bool:
        """The dispatcher, after a flush: send more of the pending file, or run the body's
        iterator for more blocks (counted in core ``slot``'s scoreboard slot, so harakiri
        watches it). True when the response is complete; ClientGone if it cannot be."""
        exchange = self._pending
        assert exchange is not None
        if self._file_left is not None:
            self._sendfile_some()
            return self._file_left is None and not self._out
        scoreboard = self.worker.scoreboard
        scoreboard.begin(slot, exchange.request.method, exchange.environ["PATH_INFO"])
        try:
            return exchange.pump_more(self._out)
        finally:
            scoreboard.end(slot)

    def _finish_pending(self) -> None:
        exchange, self._pending = self._pending, None
        if exchange is not None:
            exchange.finish()
            if not exchange.writer.keep_alive:
                self._close_after_out = True

    # -- writing: never blocks --------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        """Send ``data`` without blocking; what does not fit waits in ``_out`` for the
        dispatcher (the pump stops producing past WRITE_BUFFER)."""
        out = self._out
        if not out:
            try:
                sent = self.sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                raise ClientGone() from None
            self._moved += sent
            self._last_progress = time.monotonic()
            if sent == len(data):
                return
            data = data[sent:]
        out += data

    def _send_file(self, fd: int, offset: int, count: int) -> None:
        """``os.sendfile`` ``count`` bytes of ``fd`` from ``offset``, after what is buffered;
        what does not go now is left to the dispatcher (``_file_left``)."""
        self._file_left = (fd, offset, count)
        if not self._out:
            self._sendfile_some()

    def _sendfile_some(self) -> None:
        assert self._file_left is not None
        fd, offset, count = self._file_left
        out = self.sock.fileno()
        while count > 0:
            try:
                sent = os.sendfile(out, fd, offset, count)
            except BlockingIOError:
                break
            except OSError:
                raise ClientGone() from None
            if not sent:
                raise ClientGone()  # the file ended early: the Content-Length cannot be met.
            offset += sent
            count -= sent
            self._moved += sent
            self._last_progress = time.monotonic()
        self._file_left = (fd, offset, count) if count else None
