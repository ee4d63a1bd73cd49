"""Logging setup and the lifecycle log lines, which are also the readiness protocol.

Every process (master and workers) logs one line per event to stderr. :mod:`server.testing`
parses the lifecycle lines below to learn the bound address and the worker pids, so their
format is defined once, here, with the regular expression that matches it.

Anything that came from a client (paths, header values) goes through :func:`printable` before it
reaches a log line: a request must not be able to forge log lines or send escape sequences to a
terminal.
"""

from __future__ import annotations

import logging
import re
import sys

LOGGER_NAME = "server"
ACCESS_LOGGER_NAME = "server.access"

LISTENING = "listening on http://{host}:{port} (master pid: {pid})"
LISTENING_RE = re.compile(
    r"listening on http://(?P<host>[^:\s]+):(?P<port>\d+) \(master pid: (?P<pid>\d+)\)"
)

SPAWNED = "spawned worker {index} (pid: {pid}, threads: {threads})"
SPAWNED_RE = re.compile(r"spawned worker (?P<index>\d+) \(pid: (?P<pid>\d+), threads: \d+\)")

WORKER_READY = "worker {index} (pid: {pid}) ready"
WORKER_READY_RE = re.compile(r"worker (?P<index>\d+) \(pid: (?P<pid>\d+)\) ready")

WORKER_EXITED = "worker {index} (pid: {pid}) {how}"
WORKER_EXITED_RE = re.compile(r"worker (?P<index>\d+) \(pid: (?P<pid>\d+)\) (?:exited|killed)")

ALL_READY = "ready: {count} workers"
ALL_READY_RE = re.compile(r"ready: (?P<count>\d+) workers")

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\\]")


def printable(text: str | bytes, limit: int = 200) -> str:
    """Return ``text`` safe for one log line: control characters escaped, length capped."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    if len(text) > limit:
        text = text[:limit] + "..."
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def setup(access_log: bool) -> None:
    """Send the server's logs to stderr, one line each, with the pid of the process writing.

    Runs in the master before any fork; workers inherit the handlers.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] [%(levelname)s] %(message)s"))
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    access = logging.getLogger(ACCESS_LOGGER_NAME)
    access.disabled = not access_log


def get() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)
