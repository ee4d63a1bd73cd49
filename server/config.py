"""The server's settings: one declarative table, validated at the edge, read-only afterwards.

Each row of :data:`SETTINGS` is (name, converter, default, help), in waitress's spirit; the
command line is generated from it, and :func:`parse` returns a frozen :class:`Config` or raises
:class:`~server.errors.ConfigError` with a sentence before anything (socket, fork) has started.
Runs in the master, before the fork.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
from collections.abc import Callable, Sequence
from typing import Any

from .errors import ConfigError

MiB = 1024 * 1024

# Timing shared by the master, the workers and the connection loop (seconds).
TICK = (
    1.0  # longest single socket or accept() wait; each loop re-checks deadlines and the stop flag
)
MASTER_TICK = 0.5  # the master's supervision loop: reaping, harakiri deadlines, respawn back-off
# Unsent response bytes a core may leave to the dispatcher (server.connection): a response to a
# slow reader that fits is finished by the dispatcher, never by a waiting core. Per connection.
WRITE_BUFFER = 256 * 1024
# After a refusal, how long and how much of what the client still sends is read and dropped
# before closing, so the response is not lost to a TCP reset (RFC 9112 §9.6).
LINGER_SECONDS = 2.0
LINGER_BYTES = 4 * MiB
# File descriptors a worker keeps for itself (epoll, pipes, logs, the application's own clients
# and files) when --max-connections is derived from the open-file limit.
FD_RESERVE = 64
# How often an accept() error that the worker cannot fix (EMFILE, ENFILE, ENOBUFS, ENOMEM) is
# logged at most; accepting pauses for a TICK each time instead of retrying in a loop.
ACCEPT_ERROR_LOG_INTERVAL = 10.0
WORKER_EXTRA_DRAIN = 2.0  # a worker's drain waits --graceful-timeout plus this before giving up


def fd_limit() -> int:
    """The soft open-file limit of this process (inherited by the workers)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"{value} is not a positive integer")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"{value} is negative")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{text} is not a finite number of seconds >= 0")
    return value


def _bind(text: str) -> tuple[str, int]:
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r} is not HOST:PORT")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is outside 0-65535")
    return host.strip("[]"), port


def _flag(text: str) -> bool:
    return True


# (name, converter, default, help). A converter of _flag makes a store_true option.
SETTINGS: tuple[tuple[str, Callable[[str], Any], Any, str], ...] = (
    (
        "bind",
        _bind,
        "127.0.0.1:8000",
        "HOST:PORT to listen on; loopback by default; port 0 picks a free port (logged)",
    ),
    ("workers", _positive_int, 2, "worker processes"),
    ("threads", _positive_int, 4, "request threads per worker, each accept()ing on the socket"),
    (
        "protocol_cores",
        _non_negative_int,
        2,
        "cores of a worker doing HTTP work (polling, reading, parsing, writing) at once; one "
        "polls, a running core takes the next event itself, and the application's code is "
        "not counted (0: every core polls for itself, no limit, as before 0.4; see "
        "server/relay.py)",
    ),
    ("backlog", _positive_int, 1024, "listen() backlog"),
    ("lazy_apps", _flag, False, "import the app in each worker after the fork, not in the master"),
    ("max_requests", _non_negative_int, 0, "recycle a worker after this many requests (0: never)"),
    (
        "max_requests_jitter",
        _non_negative_int,
        None,
        "add 0..N random requests to each worker's limit (default: a tenth of --max-requests)",
    ),
    ("harakiri", _seconds, 0.0, "kill a worker whose request runs longer than this (0: off)"),
    ("graceful_timeout", _seconds, 30.0, "on stop or reload, seconds in-flight requests get"),
    ("header_timeout", _seconds, 10.0, "seconds a client gets to send a request's headers"),
    ("keepalive_timeout", _seconds, 5.0, "seconds an idle keep-alive connection is kept (0: off)"),
    ("socket_timeout", _seconds, 30.0, "seconds a body read or response write may stall"),
    (
        "min_rate",
        _positive_int,
        1024,
        "bytes per second a request body or a response must average after the first "
        "--socket-timeout (slower clients are cut off)",
    ),
    (
        "max_connections",
        _non_negative_int,
        0,
        "open connections per worker; at the cap the oldest idle one is closed for a new one "
        "(0: the open-file limit minus 64)",
    ),
    ("max_body", _non_negative_int, 10 * MiB, "largest request body in bytes (413 above)"),
    (
        "max_body_buffer",
        _non_negative_int,
        0,
        "request-body bytes a worker holds at once while bodies arrive, over all its "
        "connections (503 above; 0: 4 x --max-body, at least 64 MiB)",
    ),
    ("max_header_bytes", _positive_int, 32 * 1024, "largest request line + headers in bytes (431)"),
    ("max_headers", _positive_int, 100, "most header fields in a request (431 above)"),
    ("access_log", _flag, False, "log one line per request"),
)


@dataclasses.dataclass(frozen=True)
class Config:
    """The validated settings; built once in the master, inherited read-only by workers."""

    app: str
    bind: tuple[str, int]
    workers: int
    threads: int
    protocol_cores: int
    backlog: int
    lazy_apps: bool
    max_requests: int
    max_requests_jitter: int
    harakiri: float
    graceful_timeout: float
    header_timeout: float
    keepalive_timeout: float
    socket_timeout: float
    min_rate: int
    max_connections: int
    max_body: int
    max_body_buffer: int
    max_header_bytes: int
    max_headers: int
    access_log: bool

    @property
    def host(self) -> str:
        return self.bind[0]

    @property
    def port(self) -> int:
        return self.bind[1]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's hook; never returns
        raise ConfigError(message[:1].upper() + message[1:] + ".")


def _converter(name: str, convert: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return convert(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{exc}") from None

    parse.__name__ = name
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m server",
        description="A prefork-threaded WSGI server on uWSGI's model (see server/README.md).",
    )
    parser.add_argument("app", help="the WSGI application, as MODULE:CALLABLE")
    for name, convert, default, text in SETTINGS:
        option = "--" + name.replace("_", "-")
        if convert is _flag:
            parser.add_argument(option, action="store_true", help=text)
        else:
            shown = f" (default: {default})" if default is not None else ""
            parser.add_argument(
                option,
                type=_converter(name, convert),
                default=default,
                help=text + shown,
                metavar=name.upper(),
            )
    return parser


def parse(argv: Sequence[str]) -> Config:
    """Turn a command line into a :class:`Config`, or raise :class:`ConfigError`."""
    values = vars(build_parser().parse_args(list(argv)))
    if ":" not in values["app"]:
        raise ConfigError(f"The application {values['app']!r} is not MODULE:CALLABLE.")
    if values["max_requests_jitter"] is None:
        values["max_requests_jitter"] = values["max_requests"] // 10
    elif values["max_requests_jitter"] and not values["max_requests"]:
        raise ConfigError("--max-requests-jitter needs --max-requests; there is nothing to spread.")
    if values["header_timeout"] <= 0:
        raise ConfigError(
            "--header-timeout must be above 0, or a slow client holds a thread forever."
        )
    if values["socket_timeout"] <= 0:
        raise ConfigError(
            "--socket-timeout must be above 0, or a stalled client holds a thread forever."
        )
    files = fd_limit()
    if values["max_connections"] > files - FD_RESERVE:
        raise ConfigError(
            f"--max-connections {values['max_connections']} is above the open-file limit "
            f"({files}) minus {FD_RESERVE} kept for the worker itself; raise the limit "
            "(ulimit -n) or lower the cap."
        )
    if values["max_body_buffer"] == 0:
        values["max_body_buffer"] = max(4 * values["max_body"], 64 * MiB)
    if values["max_connections"] == 0:
        values["max_connections"] = max(16, files - FD_RESERVE)
    if values["harakiri"] and values["harakiri"] < 1:
        raise ConfigError(
            f"--harakiri {values['harakiri']} is under 1 second; it must be 0 (off) or at least 1, "
            "since the master checks deadlines twice a second."
        )
    return Config(**values)
