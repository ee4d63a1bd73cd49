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
  in and writes the responses. A response is sent without blocking as long as the unsent part
  fits in :data:`~server.config.WRITE_BUFFER`; what is left when the application is done goes
  back to the dispatcher (``WRITE``). Only a response larger than that buffer makes the core
  wait for the client, bounded by the write deadline below.

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
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal, Protocol

from . import logs, response
from .config import LINGER_BYTES, LINGER_SECONDS, TICK, WRITE_BUFFER, Config
from .errors import HTTPError, RequestTimeout, ResponseError
from .parser import Request, RequestParser
from .scoreboard import Scoreboard
from .writer import ResponseWriter
from .wsgi import FileWrapper, ResponseStart, WSGIApp, build_environ

RECV_SIZE = 65536
READ_BURST = 4 * RECV_SIZE  # bytes one on_readable() takes before it lets other connections go

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


class WorkerView(Protocol):
    """What a connection needs from its worker (see :class:`server.worker.Worker`)."""

    config: Config
    app: WSGIApp
    base_environ: dict[str, Any]
    scoreboard: Scoreboard
    stopping: threading.Event

    def request_started(self) -> None: ...


class ClientGone(Exception):
    """The client closed or reset the connection, or fell behind a write deadline."""


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
    ) -> None:
        self.sock = sock
        self.remote = remote
        self.worker = worker
        self.config = config = worker.config
        self._on_close: Callable[[Connection], None] | None = on_close
        self.slot = 0  # the core serving it now (its scoreboard slot)
        self.parser = RequestParser(
            max_header_bytes=config.max_header_bytes,
            max_headers=config.max_headers,
            max_body=config.max_body,
        )
        self.served = 0
        self.polled = False  # registered with the dispatcher's epoll (set by the dispatcher)
        now = time.monotonic()
        self.mode: _Mode = "read"
        self.deadline = now + config.header_timeout  # the whole first head, from accept
        self.idle_since = now  # when it last finished a response (for the oldest-idle choice)
        self._out = bytearray()  # response bytes not sent yet
        self._close_after_out = False
        self._linger_bytes = 0
        self._body_started = 0.0  # a request body (or a response) is moving: its clock
        self._moved = 0
        self._last_progress = now
        self._poll: select.poll | None = None  # for a core's bounded waits (made when needed)
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
        if self.mode == "write":
            return select.EPOLLOUT
        if self._out:
            return select.EPOLLIN | select.EPOLLOUT
        return select.EPOLLIN

    def close(self) -> None:
        """Close the socket (idempotent; also drops it from every epoll set)."""
        on_close, self._on_close = self._on_close, None
        self.sock.close()
        if on_close is not None:
            on_close(self)

    # -- the dispatcher's side: never blocks -----------------------------------------------

    def on_readable(self, now: float) -> Step:
        """Read what is there (a bounded burst) and feed it to the parser."""
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
            was_idle = parser.between_requests
            in_head = parser.in_head
            try:
                parser.feed(data)
            except HTTPError as exc:
                return self.refuse(exc)
            if parser.has_request:
                return READY
            if was_idle and self.served:
                self.deadline = now + self.config.header_timeout  # a head began now
            if parser.in_body:
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

    def on_writable(self, now: float) -> Step:
        """Send what fits of the pending output; then read again, close, or linger."""
        step = self._flush()
        if step is not READ:
            return step
        if self.mode == "write":
            return self._output_done(now)
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
        self.close()
        return CLOSED

    def refuse(self, exc: HTTPError) -> Step:
        """Answer a refusal with its status and ``Connection: close``; then linger."""
        log.info("refused %s from %s: %s", exc.status, self.remote[0], logs.printable(str(exc)))
        self._out += response.for_http_error(exc)
        self._close_after_out = True
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
            return self._begin_linger(now)
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

    def _start_transfer(self, now: float) -> None:
        self._body_started = self._last_progress = now
        self._moved = 0

    # -- a core's side: answer the requests that are in ------------------------------------

    def serve(self, slot: int) -> Step:
        """Answer every complete request (pipelined ones too); then what to wait for.

        Never raises for anything the client did; closes the socket itself before ``CLOSED``.
        """
        self.slot = slot
        parser = self.parser
        request: Request | None = None
        try:
            while True:
                try:
                    request = parser.next_request()
                except HTTPError as exc:  # garbage after pipelined requests
                    return self.refuse(exc)
                if request is None or not self._handle(request):
                    break
        except ClientGone:
            self.close()
            return CLOSED
        except BaseException:
            self.close()
            raise
        now = time.monotonic()
        if request is not None:  # its response said close
            self._close_after_out = True
            if not self._out:
                if parser.has_leftover:
                    return self._begin_linger(now)  # unread bytes: a reset could eat our answer
                self.close()  # all read, all sent: close at once.
                return CLOSED
        if self._out:
            self.mode = "write"
            return WRITE
        return self._output_done(now)

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
        self._start_transfer(started)
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

    # -- writing (a core) -------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        """Send ``data`` without blocking, keeping what does not fit; wait for the client only
        when more than WRITE_BUFFER is unsent (bounded by the write deadline)."""
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
        if len(out) > WRITE_BUFFER:
            self._drain_out(WRITE_BUFFER // 2)

    def _drain_out(self, keep: int) -> None:
        """Wait (a core) until at most ``keep`` bytes are unsent; ClientGone past the write
        deadline (``--min-rate`` and ``--socket-timeout``, see transfer_deadline)."""
        out = self._out
        while len(out) > keep:
            try:
                sent = self.sock.send(out)
            except BlockingIOError:
                self._wait(select.POLLOUT)
                continue
            except OSError:
                raise ClientGone() from None
            del out[:sent]
            self._moved += sent
            self._last_progress = time.monotonic()

    def _send_file(self, fd: int, offset: int, count: int) -> None:
        """``os.sendfile`` ``count`` bytes of ``fd`` from ``offset`` (a core; the same write
        deadline as _drain_out)."""
        self._drain_out(0)  # in order: what is buffered goes first
        out = self.sock.fileno()
        while count > 0:
            try:
                sent = os.sendfile(out, fd, offset, count)
            except BlockingIOError:
                self._wait(select.POLLOUT)
                continue
            except OSError:
                raise ClientGone() from None
            if not sent:
                raise ClientGone()  # the file ended early: the Content-Length cannot be met.
            offset += sent
            count -= sent
            self._moved += sent
            self._last_progress = time.monotonic()

    def _wait(self, events: int) -> None:
        """Wait until the socket is ready for ``events``, a TICK at most; ClientGone past the
        write deadline."""
        now = time.monotonic()
        deadline = transfer_deadline(
            self._body_started, self._moved, self._last_progress, self.config
        )
        if now >= deadline:
            raise ClientGone()
        if self._poll is None:
            self._poll = select.poll()
            self._poll.register(self.sock.fileno(), events)
        else:
            self._poll.modify(self.sock.fileno(), events)
        self._poll.poll(min(deadline - now, TICK) * 1000)
