"""One request and its response while the response is produced.

An :class:`Exchange` holds what a response needs until its last byte is handed over: the
request, the environ, the :class:`~server.writer.ResponseWriter`, the application's iterable
and its iterator. It runs the application and pumps the body's blocks into the writer until
the body ends or more than :data:`~server.config.WRITE_BUFFER` is waiting for the client; then
the connection (:mod:`server.connection`) keeps it, and the dispatcher pumps again as the
client reads. However the response ends (complete, cut off, the client gone), the iterable's
``close()`` is called once (PEP 3333).

Which thread: the core that runs the application; for a body a slow reader has not taken yet,
the free core that got the connection's ``EPOLLOUT`` event (in that core's scoreboard slot).
One at a time, as the connection that holds it. That core counts as running in the worker's
relay (:mod:`server.relay`) for the server's work, and stops counting while the application's
code runs (:meth:`~server.relay.Relay.pause`): the call, the iteration of a body that is not a
list, the iterable's ``close()``.

Application errors are contained here: before the head went out, the client gets a 500 with
no traceback (the traceback goes to the log); after, the connection is closed
(:class:`~server.errors.ClientGone`): a fake end of body would be a lie.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from . import logs, response
from .config import WRITE_BUFFER
from .errors import ClientGone, ResponseError
from .parser import Request
from .relay import Relay
from .writer import ResponseWriter
from .wsgi import FileWrapper, ResponseStart, WSGIApp

log = logs.get()
_T = TypeVar("_T")
access_log = logging.getLogger(logs.ACCESS_LOGGER_NAME)


class Exchange:
    """One request and its response, from the application call to the iterable's close()."""

    __slots__ = (
        "request",
        "environ",
        "writer",
        "remote",
        "relay",
        "started",
        "result",
        "iterator",
    )

    def __init__(
        self,
        request: Request,
        environ: dict[str, Any],
        writer: ResponseWriter,
        remote: tuple[str, int],
        relay: Relay,
    ) -> None:
        self.request = request
        self.environ = environ
        self.writer = writer
        self.remote = remote
        self.relay = relay
        self.started = time.monotonic()
        self.result: Iterable[bytes] | None = None
        self.iterator: Iterator[bytes] | None = None

    def run(self, app: WSGIApp, start: ResponseStart, out: bytearray) -> bool:
        """Call the application and pump its body (a core). True when the application's
        part is done (what is unsent may still wait in ``out``); False when more than
        WRITE_BUFFER waits and the body's iterator has more (see :meth:`pump`)."""
        writer, relay = self.writer, self.relay
        try:
            # _outside written out: this is every request's path (a call and a frame fewer)
            paused = relay.pause()
            try:
                result = self.result = app(self.environ, start)
            finally:
                if paused:
                    relay.resume()
            if type(result) is list:  # the common case: no application code left to run
                writer.declare_length(sum(map(len, result)))
                self.iterator = iter(result)
                return self.pump(out)
            if isinstance(result, FileWrapper) and writer.send_file(result):
                writer.finish()  # a Content-Length body: nothing is framed after the file
                return True
            return self._outside(self._pump_from, result, out)
        except ClientGone:
            raise
        except Exception as exc:  # the application's error: contained to this request.
            self.failed(exc)
            writer.send_canned(response.error_response(response.INTERNAL_ERROR))
            return True

    def _outside(self, code: Callable[..., _T], *args: Any) -> _T:
        """Run the application's ``code`` outside the relay's count of running cores, and
        count again after it however it ends (:meth:`server.relay.Relay.pause`)."""
        relay = self.relay
        paused = relay.pause()
        try:
            return code(*args)
        finally:
            if paused:
                relay.resume()

    def _pump_from(self, result: Iterable[bytes], out: bytearray) -> bool:
        self.iterator = iter(result)
        return self.pump(out)

    def pump(self, out: bytearray) -> bool:
        """Hand the body's blocks to the writer until it ends (True) or more than
        WRITE_BUFFER is unsent in ``out`` (False: the rest waits for the client). An error of
        the application propagates (see :meth:`run`, :meth:`pump_more`)."""
        writer, iterator = self.writer, self.iterator
        assert iterator is not None
        for data in iterator:
            writer.write(data)
            if len(out) > WRITE_BUFFER:
                return False
        writer.finish()
        return True

    def pump_more(self, out: bytearray) -> bool:
        """:meth:`pump` again, for the dispatcher (outside the relay's count: the body's
        iterator is the application's code): the head is out, so an application error ends the
        connection (ClientGone)."""
        try:
            return self._outside(self.pump, out)
        except ClientGone:
            raise
        except Exception as exc:
            self.failed(exc)
            raise ClientGone() from None

    def failed(self, exc: Exception) -> None:
        """Log the application's error; mark the response a 500 if its head has not gone
        out, else raise ClientGone (closing mid-body is the only honest signal)."""
        environ, writer = self.environ, self.writer
        path = logs.printable(environ.get("PATH_INFO", ""))
        if isinstance(exc, ResponseError):
            log.error("application broke a WSGI rule on %s: %s", path, logs.printable(str(exc)))
        else:
            log.exception("application error on %s %s", environ["REQUEST_METHOD"], path)
        if writer.headers_sent:
            raise ClientGone() from None
        writer.failed = True
        writer.status_code = "500"

    def finish(self) -> None:
        """The response is complete: the iterable's close(), then the access log line."""
        if self.result is not None:
            self.close()
        if access_log.isEnabledFor(logging.INFO):  # False when --access-log is off
            self.log_access()

    def close(self) -> None:
        """PEP 3333: the iterable's ``close()``, once, however the response ended (outside
        the relay's count: it is the application's code, and may wait on a database)."""
        close: Callable[[], Any] | None = getattr(self.result, "close", None)
        self.result = self.iterator = None
        if close is not None:
            try:
                self._outside(close)
            except Exception:
                log.exception("application iterable close() failed")

    def log_access(self) -> None:
        request, writer = self.request, self.writer
        access_log.info(
            '%s - "%s %s HTTP/%s" %s %d %.1fms',
            self.remote[0],
            request.method,
            logs.printable(request.target),
            request.version,
            writer.status_code,
            writer.body_bytes,
            (time.monotonic() - self.started) * 1000,
        )
