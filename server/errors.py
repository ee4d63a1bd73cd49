"""Errors of the server package, under one base, :class:`ServerError`.

HTTP errors carry the status the client gets (in h11's spirit): the connection loop turns any
:class:`HTTPError` raised while reading a request into that response and closes the connection.
Their messages are sentences meant for the log; the client only ever sees the reason phrase.
"""

from __future__ import annotations


class ServerError(Exception):
    """Base of every error raised by the server package."""


class ConfigError(ServerError, ValueError):
    """A setting is unknown, malformed or contradicts another; raised before anything starts."""


class AppLoadError(ServerError):
    """The ``MODULE:CALLABLE`` application could not be imported or is not callable."""


class ServerStartError(ServerError):
    """The server process exited or never reported ready (raised by :mod:`server.testing`)."""


class HTTPError(ServerError):
    """A request the server refuses; ``status`` is what the client is answered."""

    status = 400
    reason = "Bad Request"

    @property
    def status_line(self) -> str:
        return f"{self.status} {self.reason}"


class BadRequest(HTTPError):
    status = 400
    reason = "Bad Request"


class RequestTimeout(HTTPError):
    status = 408
    reason = "Request Timeout"


class PayloadTooLarge(HTTPError):
    status = 413
    reason = "Payload Too Large"


class ExpectationFailed(HTTPError):
    status = 417
    reason = "Expectation Failed"


class URITooLong(HTTPError):
    status = 414
    reason = "URI Too Long"


class HeadersTooLarge(HTTPError):
    status = 431
    reason = "Request Header Fields Too Large"


class NotImplementedByServer(HTTPError):
    status = 501
    reason = "Not Implemented"


class ClientGone(ServerError):
    """The client closed or reset the connection, or fell behind a write deadline: nothing
    more can be sent to it (internal: the connection closes, nothing is answered)."""


class ServiceUnavailable(HTTPError):
    status = 503
    reason = "Service Unavailable"


class ResponseError(ServerError):
    """The application broke a WSGI rule (bad status, header, hop-by-hop header, CR/LF...).

    The client gets a 500 if nothing was sent yet, otherwise the connection is closed.
    """


class VersionNotSupported(HTTPError):
    status = 505
    reason = "HTTP Version Not Supported"
